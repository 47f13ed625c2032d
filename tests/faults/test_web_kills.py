"""kill -9 the web server (gunicorn, master and workers) mid-delivery and start
it again: the harness sends again whatever got no 2xx, as Stripe does, and
afterwards every event is stored once, processed once, and the ledger equals
one clean run's: nothing lost, nothing doubled.

Sizes: CI 400 deliveries and 2 kills; SLOW_TESTS=1 3,000 and 6.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.db import Database
from tests.faults.harness import (
    SLOW,
    StripeStub,
    add_checkouts,
    app_env,
    build_stream,
    deliver_until_acknowledged,
    event_counts,
    expected_ledger,
    ledger_of,
    run_cli,
    start_gunicorn,
    wait_for,
)
from tests.servers import free_port

DELIVERIES, KILLS = (3_000, 6) if SLOW else (400, 2)


@pytest.mark.timeout(900 if SLOW else 300)
def test_a_web_server_killed_mid_delivery_loses_and_doubles_nothing(
    pg_url: str, pg: Database, sqlite_template: Path, tmp_path: Path
) -> None:
    stream = build_stream(DELIVERIES, seed=99, tag="web")
    add_checkouts(pg, stream)
    with StripeStub(stream.scenario.stubs).serve() as stripe_base:
        expected = expected_ledger(sqlite_template, tmp_path, stream, stripe_base)
        env = app_env(pg_url, stripe_base, tmp_path)
        port = free_port()
        log = tmp_path / "gunicorn.log"
        web, base = start_gunicorn(env, log, port=port)
        halt = threading.Event()
        counts: dict[str, int] = {}

        def deliver() -> None:
            counts.update(
                deliver_until_acknowledged(
                    base, stream.deliveries, threads=4, timeout=240, stop=halt
                )
            )

        sender = threading.Thread(target=deliver)
        sender.start()
        try:
            for kill in range(KILLS):
                received = (kill + 1) * stream.unique // (KILLS + 2)
                wait_for(
                    lambda r=received: sum(event_counts(pg).values()) >= r,
                    timeout=120,
                    what=f"{received} events stored",
                )
                web.kill()
                time.sleep(0.5)  # deliveries fail meanwhile: refused connections
                web, base = start_gunicorn(env, log, port=port)
            sender.join()
        finally:
            halt.set()
            sender.join()
            web.stop()
        # The worker afterwards: what was stored is applied once.
        drained = run_cli(["worker", "--once"], env)
        assert drained.returncode == 0, drained.stderr

    assert counts.get("error", 0) > 0, counts  # the kills did cut deliveries off
    assert not any(status.startswith(("4", "5")) for status in counts), counts
    assert event_counts(pg) == {"processed": stream.unique}
    assert ledger_of(pg) == expected
