"""kill -9 a real `donations worker` on PostgreSQL, again and again, while it
applies a stream of events with 30% duplicates in shuffled order (signed, sent
through the webhook route) and mails their receipts to an SMTP server: after
the restarts the ledger equals one clean run's exactly, `donations ledger
verify` passes, and no receipt went out twice except the one in flight at a kill.

Sizes: CI 1,000 deliveries and 5 kills; SLOW_TESTS=1 5,000 and 20 (issue 12).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.faults.harness import (
    SLOW,
    StripeStub,
    add_checkouts,
    app_env,
    build_stream,
    event_counts,
    expected_ledger,
    in_process_settings,
    job_counts,
    ledger_of,
    run_cli,
    start_worker,
    wait_for,
)
from tests.integration.test_receipts import Mailbox
from tests.stripe_helpers import post_event

DELIVERIES, KILLS = (5_000, 20) if SLOW else (1_000, 5)


@pytest.mark.timeout(1800 if SLOW else 300)
def test_a_worker_killed_again_and_again_leaves_the_exact_ledger_and_one_receipt_each(
    pg_url: str, pg: Database, sqlite_template: Path, tmp_path: Path, mailbox: Mailbox
) -> None:
    stream = build_stream(DELIVERIES, seed=2026)
    rng = random.Random(20)
    with StripeStub(stream.scenario.stubs).serve() as stripe_base:
        expected = expected_ledger(sqlite_template, tmp_path, stream, stripe_base)

        add_checkouts(pg, stream)
        app = create_app(in_process_settings(pg_url, stripe_base))
        client = app.test_client()
        now = int(time.time())
        for event in stream.deliveries:
            assert post_event(client, event, WEBHOOK_SECRET, timestamp=now).status_code == 200
        app.extensions["donations.db"].dispose()
        assert event_counts(pg) == {"pending": stream.unique}

        env = app_env(
            pg_url,
            stripe_base,
            tmp_path,
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(mailbox.port),
            MAIL_FROM="receipts@newsroom.test",
        )
        log = tmp_path / "worker.log"
        # Kill points spread over the stream: each worker is killed once it has
        # applied up to the next point (at a random moment in its work).
        points = sorted(rng.sample(range(1, stream.unique - 1), KILLS))
        for point in points:
            worker = start_worker(env, log)
            wait_for(
                lambda p=point, w=worker: _processed(pg) >= p or w.popen.poll() is not None,
                timeout=120,
                what=f"{point} events processed",
                every=0.02,
            )
            assert worker.popen.poll() is None, worker.output()[-3000:]
            worker.kill()
        worker = start_worker(env, log)
        try:
            wait_for(lambda: _settled(pg), timeout=240, what="every event and job done")
        finally:
            worker.stop()

    assert event_counts(pg) == {"processed": stream.unique}
    assert ledger_of(pg) == expected
    verify = run_cli(["ledger", "verify"], env)
    assert verify.returncode == 0, verify.stderr
    assert "ledger verified" in verify.stdout

    jobs = job_counts(pg)
    assert set(jobs) == {"done"}, jobs
    sent = Counter(str(message["Message-ID"]) for message in mailbox.received)
    assert len(sent) == jobs["done"]  # every job's message arrived
    twice = {mid: n for mid, n in sent.items() if n > 1}
    assert all(n == 2 for n in twice.values()) and len(twice) <= KILLS, twice


def _processed(pg: Database) -> int:
    return event_counts(pg).get("processed", 0)


def _settled(pg: Database) -> bool:
    events, jobs = event_counts(pg), job_counts(pg)
    return set(events) == {"processed"} and set(jobs) <= {"done", "dead"}


class StallingMailbox(Mailbox):
    """An SMTP server that has the first message in full and then never says
    250: the worker is killed while it waits, with that receipt in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.sleep(60)
        return answer


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_send_sends_only_the_receipt_in_flight_again(
    pg_url: str, pg: Database, tmp_path: Path
) -> None:
    stream = build_stream(30, duplicates=0, seed=3, tag="send")
    box = StallingMailbox()
    box.start()
    try:
        with StripeStub(stream.scenario.stubs).serve() as stripe_base:
            add_checkouts(pg, stream)
            app = create_app(in_process_settings(pg_url, stripe_base))
            client = app.test_client()
            for event in stream.deliveries:
                assert post_event(client, event, WEBHOOK_SECRET).status_code == 200
            app.extensions["donations.db"].dispose()
            env = app_env(
                pg_url,
                stripe_base,
                tmp_path,
                MAIL_SERVER="127.0.0.1",
                MAIL_PORT=str(box.port),
                MAIL_FROM="receipts@newsroom.test",
            )
            log = tmp_path / "worker.log"
            worker = start_worker(env, log)
            wait_for(box.stalled.is_set, timeout=120, what="a receipt in flight")
            worker.kill()
            in_flight = str(box.received[0]["Message-ID"])
            worker = start_worker(env, log)
            try:
                wait_for(lambda: _settled(pg), timeout=120, what="every event and job done")
            finally:
                worker.stop()
    finally:
        box.stop()

    jobs = job_counts(pg)
    assert set(jobs) == {"done"}, jobs
    sent = Counter(str(message["Message-ID"]) for message in box.received)
    assert len(sent) == jobs["done"]
    assert {mid: n for mid, n in sent.items() if n > 1} == {in_flight: 2}
