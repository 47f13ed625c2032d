"""PostgreSQL stopped and started under load, on a cluster this test makes itself
(`initdb` on its own port; never the shared server): gunicorn and a worker
recover by themselves (the pool's pre-ping drops dead connections), the
webhook route answers 503 meanwhile (never a 500 with a stack trace), so
Stripe sends again, and the ledger ends exact.

Sizes: CI 300 deliveries and one outage; SLOW_TESTS=1 1,500 and three.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from app.db import Database
from app.migrate import upgrade
from tests.conftest import IN_CI
from tests.faults.harness import (
    SLOW,
    Cluster,
    StripeStub,
    add_checkouts,
    app_env,
    build_stream,
    deliver_until_acknowledged,
    event_counts,
    expected_ledger,
    ledger_of,
    postgres_bin,
    start_gunicorn,
    start_worker,
    wait_for,
)

DELIVERIES, OUTAGES = (1_500, 3) if SLOW else (300, 1)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if postgres_bin() is None:
        if IN_CI:
            pytest.fail("CI needs PostgreSQL's server binaries under /usr/lib/postgresql")
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    folder = Path(tempfile.mkdtemp(prefix="donations-pg-"))
    server = Cluster(folder)
    try:
        server.init()
        upgrade(server.url)
        yield server
    finally:
        server.destroy()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(900 if SLOW else 300)
def test_the_service_rides_out_a_postgres_restart_answering_503_meanwhile(
    cluster: Cluster, sqlite_template: Path, tmp_path: Path
) -> None:
    stream = build_stream(DELIVERIES, seed=7, tag="pg")
    database = Database(cluster.url)
    try:
        add_checkouts(database, stream)
        with StripeStub(stream.scenario.stubs).serve() as stripe_base:
            expected = expected_ledger(sqlite_template, tmp_path, stream, stripe_base)
            env = app_env(cluster.url, stripe_base, tmp_path)
            web, base = start_gunicorn(env, tmp_path / "gunicorn.log")
            worker = start_worker(env, tmp_path / "worker.log")
            halt = threading.Event()
            counts: dict[str, int] = {}
            lock = threading.Lock()
            bodies: list[str] = []
            # One share of the deliveries before the first outage, one sent
            # from the moment each outage begins (so some surely meet it).
            shares = [stream.deliveries[k :: OUTAGES + 1] for k in range(OUTAGES + 1)]

            def deliver(share: list[dict[str, object]]) -> None:
                tries = deliver_until_acknowledged(base, share, threads=3, timeout=240, stop=halt)
                with lock:
                    for status, n in tries.items():
                        counts[status] = counts.get(status, 0) + n

            senders = [threading.Thread(target=deliver, args=(shares[0],))]
            senders[0].start()
            try:
                for n in range(OUTAGES):
                    # under load: deliveries and processing under way
                    wait_for(
                        lambda: sum(event_counts(database).values()) > 0,
                        timeout=60,
                        what="deliveries under way",
                    )
                    cluster.stop("fast")
                    senders.append(threading.Thread(target=deliver, args=(shares[n + 1],)))
                    senders[-1].start()
                    # Down: the route says 503 (Stripe retries), never 500.
                    for _ in range(3):
                        response = _post_one(base, stream.deliveries[n])
                        bodies.append(response.text)
                        assert response.status_code == 503, response.text[:500]
                    time.sleep(1.0)
                    cluster.start()
                for sender in senders:
                    sender.join()
                wait_for(
                    lambda: set(event_counts(database)) == {"processed"},
                    timeout=180,
                    what="every event processed after the restarts",
                )
                assert web.popen.poll() is None and worker.popen.poll() is None
            finally:
                halt.set()
                for sender in senders:
                    sender.join()
                web.stop()
                worker.stop()
    finally:
        database.dispose()

    assert counts.get("500", 0) == 0 and counts.get("503", 0) > 0, counts
    assert not any(status.startswith("5") and status != "503" for status in counts), counts
    assert all("Traceback" not in body for body in bodies)
    assert event_counts(database) == {"processed": stream.unique}
    assert ledger_of(database) == expected
    database.dispose()
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()


def _post_one(base: str, event: dict[str, object]) -> requests.Response:
    from tests.faults.harness import signed

    body, headers = signed(dict(event))
    return requests.post(f"{base}/webhooks/stripe", data=body, headers=headers, timeout=30)
