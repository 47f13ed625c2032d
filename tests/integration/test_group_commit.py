"""The webhook route's group commit on PostgreSQL (webhooks.group_commit):
rows handed in by concurrent deliveries are stored by one statement and one
commit; each delivery learns whether its own row was new, a duplicate inside
one batch is stored once, a batch whose statement fails stores nothing and
fails every delivery in it, and under many threads each event is stored
exactly once with exactly one delivery told so."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import Database, make_engine
from tests.stripe_helpers import make_event, stripe_object
from webhooks.group_commit import GroupCommit
from webhooks.inbox import event_values, read_event

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

BLOCKER = "evt_group_blocker"


def row(event_id: str, **changes: Any) -> dict[str, Any]:
    event = make_event("charge.succeeded", stripe_object("charge"), event_id=event_id)
    payload = json.dumps(event)
    values = event_values(read_event(payload, json.loads(payload)), skipped=False, now=utcnow())
    return {**values, **changes}


def stored_ids(db: Session) -> dict[str, int]:
    """Each stored event id and the transaction (xmin) that inserted it."""
    found = db.execute(text("SELECT stripe_event_id, xmin::text::bigint FROM stripe_events"))
    ids = {event_id: int(xmin) for event_id, xmin in found}
    db.commit()
    return ids


class Deliveries:
    """Threads handing rows to one GroupCommit, each keeping what it got."""

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.threads: list[threading.Thread] = []
        self.results: dict[int, bool | BaseException] = {}

    def start(self, values: dict[str, Any]) -> int:
        number = len(self.threads)

        def deliver() -> None:
            try:
                self.results[number] = self.group.store(values)
            except Exception as exc:  # kept for the test to look at
                self.results[number] = exc

        thread = threading.Thread(target=deliver)
        self.threads.append(thread)
        thread.start()
        return number

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads)


def wait_for(condition: Any, what: str) -> None:
    done = threading.Event()
    for _ in range(400):
        if condition():
            return
        done.wait(0.025)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def blocker(app: Flask) -> Iterator[psycopg.Connection[Any]]:
    """A transaction of its own holding an uncommitted row BLOCKER: a statement
    inserting BLOCKER waits for it to end, and rows handed in meanwhile queue up."""
    url = app.config["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO stripe_events (stripe_event_id, type, livemode, stripe_created_at,"
            " payload, status, attempts, received_at)"
            " VALUES (%s, 'charge.succeeded', false, now(), '{}', 'pending', 0, now())",
            (BLOCKER,),
        )
        yield conn
        conn.rollback()


def blocked_statements(db: Session) -> int:
    count = db.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO stripe_events%'"
        )
    )
    db.commit()
    return int(count or 0)


def engine_of(app: Flask) -> Engine:
    database: Database = app.extensions["donations.db"]
    return database.single_statement_engine


def test_rows_waiting_behind_a_statement_are_stored_by_one_with_a_duplicate_once(
    app: Flask, db: Session, blocker: psycopg.Connection[Any]
) -> None:
    group = GroupCommit(engine_of(app))
    deliveries = Deliveries(group)
    first = deliveries.start(row(BLOCKER))  # its statement waits for the blocker
    wait_for(lambda: blocked_statements(db) == 1, "the first statement to block")
    queued = {
        deliveries.start(row("evt_group_a")): "evt_group_a",
        deliveries.start(row("evt_group_dup")): "evt_group_dup",
        deliveries.start(row("evt_group_b")): "evt_group_b",
        deliveries.start(row("evt_group_dup")): "evt_group_dup",
        deliveries.start(row("evt_group_c", status="skipped", next_attempt_at=None)): "c",
    }
    wait_for(lambda: group.waiting == len(queued), "the rows to queue")
    blocker.rollback()  # the first statement goes on and stores its row
    deliveries.join()

    results = deliveries.results
    assert results[first] is True
    assert [results[n] for n in queued] == [True, True, True, False, True]
    ids = stored_ids(db)
    assert sorted(ids) == sorted(
        [BLOCKER, "evt_group_a", "evt_group_b", "evt_group_c", "evt_group_dup"]
    )
    # The five queued rows went in as one statement: one transaction inserted them.
    assert len({ids[event_id] for event_id in ids if event_id != BLOCKER}) == 1
    assert ids[BLOCKER] != ids["evt_group_a"]


def test_a_batch_whose_statement_fails_stores_none_of_its_rows_and_fails_every_delivery(
    app: Flask, db: Session, blocker: psycopg.Connection[Any]
) -> None:
    # PostgreSQL cancels any statement of this engine's after 300 ms: a batch
    # holding BLOCKER fails (psycopg's QueryCanceled, an OperationalError:
    # the database could not do it now, so the route answers 503).
    engine = make_engine(
        app.config["DATABASE_URL"],
        isolation_level="AUTOCOMMIT",
        connect_args={"options": "-c statement_timeout=300"},
    )
    try:
        group = GroupCommit(engine)
        deliveries = Deliveries(group)
        first = deliveries.start(row(BLOCKER))
        wait_for(lambda: blocked_statements(db) == 1, "the first statement to block")
        queued = [
            deliveries.start(row(event_id))
            for event_id in ("evt_fail_a", "evt_fail_b", BLOCKER, "evt_fail_c")
        ]
        wait_for(lambda: group.waiting == len(queued), "the rows to queue")
        deliveries.join()
        results = deliveries.results
        for number in [first, *queued]:
            assert isinstance(results[number], psycopg.OperationalError), results[number]
        blocker.rollback()
        assert stored_ids(db) == {}  # nothing half-stored
        # The database answers again: the same rows delivered again are stored.
        assert [group.store(row(e)) for e in ("evt_fail_a", BLOCKER, "evt_fail_a")] == [
            True,
            True,
            False,
        ]
    finally:
        engine.dispose()
    assert sorted(stored_ids(db)) == sorted([BLOCKER, "evt_fail_a"])


def test_a_row_the_database_refuses_fails_only_its_own_delivery(
    app: Flask, db: Session, blocker: psycopg.Connection[Any]
) -> None:
    group = GroupCommit(engine_of(app))
    deliveries = Deliveries(group)
    deliveries.start(row(BLOCKER))
    wait_for(lambda: blocked_statements(db) == 1, "the first statement to block")
    good = deliveries.start(row("evt_good_1"))
    bad = deliveries.start(row("evt_bad_1", status="unknown"))  # breaks a CHECK constraint
    other = deliveries.start(row("evt_good_2"))
    wait_for(lambda: group.waiting == 3, "the rows to queue")
    blocker.rollback()
    deliveries.join()

    results = deliveries.results
    assert (results[good], results[other]) == (True, True)
    assert not isinstance(results[bad], psycopg.OperationalError)
    assert isinstance(results[bad], Exception)
    assert sorted(stored_ids(db)) == sorted([BLOCKER, "evt_good_1", "evt_good_2"])


def test_under_many_threads_each_event_is_stored_once_and_one_delivery_is_told(
    app: Flask, db: Session
) -> None:
    group = GroupCommit(engine_of(app))
    # 120 events, each delivered one to three times, by 24 threads at once.
    deliveries = [f"evt_many_{n}" for n in range(120) for _ in range(1 + n % 3)]
    rows = {event_id: row(event_id) for event_id in deliveries}
    told: list[tuple[str, bool]] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def deliver(share: list[str]) -> None:
        start.wait()
        for event_id in share:
            stored = group.store(rows[event_id])
            with lock:
                told.append((event_id, stored))

    threads = [threading.Thread(target=deliver, args=(deliveries[n::24],)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(told) == len(deliveries)
    stored = Counter(event_id for event_id, new in told if new)
    assert stored == Counter(set(deliveries))  # exactly one True per event
    assert sorted(stored_ids(db)) == sorted(set(deliveries))


def test_the_writer_keeps_one_connection_while_rows_wait_and_gives_it_back_after(
    app: Flask, db: Session, blocker: psycopg.Connection[Any]
) -> None:
    engine = engine_of(app)
    checkouts: list[object] = []
    listener = lambda *args: checkouts.append(args[0])  # noqa: E731 (dbapi connection)
    event.listen(engine, "checkout", listener)
    try:
        group = GroupCommit(engine)
        deliveries = Deliveries(group)
        first = deliveries.start(row(BLOCKER))  # the first batch waits for the blocker
        wait_for(lambda: blocked_statements(db) == 1, "the first statement to block")
        queued = [deliveries.start(row(f"evt_kept_{n}")) for n in range(3)]
        wait_for(lambda: group.waiting == len(queued), "the rows to queue")
        blocker.rollback()
        deliveries.join()
        assert [deliveries.results[n] for n in [first, *queued]] == [True] * 4
        # Two batches, one checkout: the second batch ran on the first's connection.
        assert len(checkouts) == 1
        wait_for(lambda: engine.pool.checkedout() == 0, "the connection back in the pool")
        # Idle, a row takes a connection again (the pooled one) and gives it back.
        assert group.store(row("evt_kept_later")) is True
        assert len(checkouts) == 2
        wait_for(lambda: engine.pool.checkedout() == 0, "the connection back in the pool")
    finally:
        event.remove(engine, "checkout", listener)
    assert len(stored_ids(db)) == 5
