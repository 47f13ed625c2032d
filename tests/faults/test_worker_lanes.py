"""The lanes of one worker (worker_lanes: threads, each on its own connection,
claiming its own share of the inbox) on PostgreSQL: a shuffled stream with
30% duplicates applied by three lanes at once ends with the ledger of one
clean run, every event processed once, by every lane; and `run` stops all of
its lanes when asked.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.faults.harness import (
    StripeStub,
    add_checkouts,
    build_stream,
    event_counts,
    expected_ledger,
    in_process_settings,
    ledger_of,
    wait_for,
)
from tests.stripe_helpers import post_event
from webhooks.worker import RetryPolicy, drain, lane_count, run


def _deliver(pg_url: str, stripe_base: str, deliveries: list[dict[str, Any]]) -> Flask:
    """The app, each delivery signed and sent through its webhook route."""
    app = create_app(in_process_settings(pg_url, stripe_base))
    client = app.test_client()
    now = int(time.time())
    for event in deliveries:
        assert post_event(client, event, WEBHOOK_SECRET, timestamp=now).status_code == 200
    return app


@pytest.mark.timeout(300)
def test_three_lanes_apply_a_shuffled_stream_with_duplicates_as_one_clean_run(
    pg_url: str,
    pg: Database,
    sqlite_template: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = build_stream(600, seed=33, tag="l")
    with StripeStub(stream.scenario.stubs).serve() as stripe_base:
        expected = expected_ledger(sqlite_template, tmp_path, stream, stripe_base)
        add_checkouts(pg, stream)
        app = _deliver(pg_url, stripe_base, stream.deliveries)
        database = app.extensions["donations.db"]
        assert lane_count(database, 3) == 3
        with caplog.at_level(logging.INFO, logger="webhooks.worker"):
            outcomes = drain(database, app.extensions["donations.payments"], RetryPolicy(), lanes=3)
        database.dispose()

    processed = sorted(o.stripe_event_id for o in outcomes if o.status == "processed")
    assert processed == sorted(e["id"] for e in stream.scenario.events)
    assert event_counts(pg) == {"processed": stream.unique}
    assert ledger_of(pg) == expected
    lanes = {r.threadName for r in caplog.records if r.getMessage().endswith(": processed")}
    assert len(lanes) == 3, lanes  # every lane applied its share


@pytest.mark.timeout(120)
def test_run_stops_every_lane_when_asked(
    pg_url: str, pg: Database, sqlite_template: Path, tmp_path: Path
) -> None:
    stream = build_stream(60, duplicates=0.0, seed=5, tag="s")
    with StripeStub(stream.scenario.stubs).serve() as stripe_base:
        add_checkouts(pg, stream)
        app = _deliver(pg_url, stripe_base, stream.deliveries)
        database = app.extensions["donations.db"]
        stop = threading.Event()
        worker = threading.Thread(
            target=run,
            args=(database, app.extensions["donations.payments"], RetryPolicy()),
            kwargs={"stop": stop, "idle_seconds": 0.05, "lanes": 2},
        )
        worker.start()
        try:
            wait_for(
                lambda: event_counts(pg) == {"processed": stream.unique},
                timeout=60,
                what="every event processed",
            )
            assert [t.name for t in threading.enumerate() if t.name.startswith("lane-")] == [
                "lane-2"
            ]
        finally:
            stop.set()
            worker.join(timeout=30)
        database.dispose()

    assert not worker.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("lane-")]


def test_sqlite_keeps_one_lane(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        assert lane_count(database, 4) == 1
    finally:
        database.dispose()
