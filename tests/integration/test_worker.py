"""The worker and its CLI: stored events are applied once each, in Stripe's
order; failures are retried with backoff, kept for staff, and marked dead after
the last attempt (at once when Stripe says the object does not exist); several
workers share the inbox without processing an event twice; replay works.

Failures are real: a `charge.updated` that announces a balance transaction
makes the handlers fetch it, and `responses` answers that call with a 500 or
a 404. Events of types the handlers ignore stand for events that succeed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.appeals.counters import count_event
from app.appeals.models import AppealCounter
from app.cli import main
from app.clock import frozen_at, utcnow
from app.db import Database
from app.donors import Donor
from app.manage.models import ManageLink
from tests import event_factory
from tests.conftest import STRIPE_TEST_KEY, WEBHOOK_SECRET
from tests.stripe_helpers import make_event, post_event, stripe_object
from webhooks.errors import describe_error
from webhooks.inbox import StripeEvent, claim_event, record_failure
from webhooks.upkeep import Pruning
from webhooks.worker import RetryPolicy, drain, process_next

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
POLICY = RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=3600)
TXN_URL = re.compile(r"https://api\.stripe\.com/v1/balance_transactions/txn_[A-Za-z0-9]+")
STRIPE_500 = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
STRIPE_404 = {
    "error": {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "id",
        "message": "No such balance transaction: 'txn_1PgaxNB7WZ01zgkWEV3TLf40'",
    }
}


@pytest.fixture
def frozen() -> Iterator[None]:
    with frozen_at(NOW):
        yield


def database(app: Flask) -> Database:
    db: Database = app.extensions["donations.db"]
    return db


def payments(app: Flask) -> Any:
    return app.extensions["donations.payments"]


def ignored_event(event_id: str, created: int = NOW_TS - 60) -> dict[str, Any]:
    """An event of a type the handlers store and acknowledge but do not apply."""
    return make_event(
        "radar.early_fraud_warning.created",
        {"id": f"issfr_{event_id}"},
        event_id=event_id,
        created=created,
    )


def fee_event(event_id: str) -> dict[str, Any]:
    """A charge.updated announcing its balance transaction: the handlers fetch it."""
    charge = stripe_object(
        "charge",
        id="ch_worker_1",
        balance_transaction="txn_worker1",
        captured=True,
        amount_captured=100,
    )
    return make_event(
        "charge.updated",
        charge,
        event_id=event_id,
        created=NOW_TS - 30,
        previous_attributes={"balance_transaction": None},
    )


def deliver(client: FlaskClient, *events: dict[str, Any]) -> None:
    for event in events:
        response = post_event(client, event, WEBHOOK_SECRET, timestamp=int(utcnow().timestamp()))
        assert response.status_code == 200


def stored(db: Session, event_id: str) -> StripeEvent:
    """The event's row as committed now. Ends its transaction: on SQLite an open
    one would hold the write lock the worker needs."""
    db.expire_all()
    row = db.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == event_id)).one()
    db.commit()
    return row


def test_the_worker_applies_every_due_event_once_in_stripes_order(
    app: Flask, client: FlaskClient, db: Session, frozen: None
) -> None:
    deliver(
        client,
        ignored_event("evt_c", created=NOW_TS - 10),
        ignored_event("evt_a", created=NOW_TS - 30),
        ignored_event("evt_b", created=NOW_TS - 30),
    )

    outcomes = drain(database(app), payments(app), POLICY)
    again = drain(database(app), payments(app), POLICY)

    assert [(o.stripe_event_id, o.status) for o in outcomes] == [
        ("evt_a", "processed"),
        ("evt_b", "processed"),
        ("evt_c", "processed"),
    ]
    assert again == []
    row = stored(db, "evt_a")
    assert (row.status, row.attempts, row.processed_at, row.last_error) == (
        "processed",
        1,
        NOW,
        None,
    )


def test_the_worker_leaves_events_from_the_other_mode_alone(
    app: Flask, client: FlaskClient, db: Session, frozen: None
) -> None:
    live = ignored_event("evt_live")
    live["livemode"] = True
    deliver(client, live)

    assert drain(database(app), payments(app), POLICY) == []
    assert stored(db, "evt_live").status == "skipped"


def test_a_failing_event_is_retried_with_growing_backoff_and_keeps_its_error(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(TXN_URL, status=500, json=STRIPE_500)
    with frozen_at(NOW):
        deliver(client, fee_event("evt_fee"))
        first = drain(database(app), payments(app), POLICY)
        not_yet = drain(database(app), payments(app), POLICY)
    row = stored(db, "evt_fee")
    after_first = (row.status, row.attempts, row.next_attempt_at, row.last_error or "")
    with frozen_at(NOW + timedelta(seconds=60)):
        second = drain(database(app), payments(app), POLICY)
    row = stored(db, "evt_fee")

    assert [o.status for o in first] == ["failed"]
    assert not_yet == []
    assert after_first[:3] == ("failed", 1, NOW + timedelta(seconds=60))
    assert after_first[3].startswith("PaymentsError:")
    assert "unavailable" in after_first[3]
    assert [o.status for o in second] == ["failed"]
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.next_attempt_at == NOW + timedelta(seconds=60 + 120)


def test_a_batch_with_a_failing_event_applies_the_others_once_each_and_retries_that_one(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(TXN_URL, status=500, json=STRIPE_500)
    with frozen_at(NOW):
        deliver(
            client,
            ignored_event("evt_before", created=NOW_TS - 60),
            fee_event("evt_fails"),  # created NOW_TS - 30
            ignored_event("evt_after", created=NOW_TS - 10),
        )
        outcomes = drain(database(app), payments(app), POLICY, batch_size=20)
        again = drain(database(app), payments(app), POLICY, batch_size=20)

    assert [(o.stripe_event_id, o.status) for o in outcomes] == [
        ("evt_before", "processed"),
        ("evt_fails", "failed"),
        ("evt_after", "processed"),
    ]
    assert again == []
    assert [
        (stored(db, e).status, stored(db, e).attempts) for e in ("evt_before", "evt_after")
    ] == [
        ("processed", 1),
        ("processed", 1),
    ]
    row = stored(db, "evt_fails")
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "failed",
        1,
        NOW + timedelta(seconds=60),
    )


def test_a_batch_is_claimed_and_committed_at_once_and_in_stripes_order(
    app: Flask, client: FlaskClient, db: Session, frozen: None
) -> None:
    deliver(client, *[ignored_event(f"evt_{n:02}", created=NOW_TS - 100 + n) for n in range(45)])

    outcomes = drain(database(app), payments(app), POLICY, batch_size=20)

    assert [o.stripe_event_id for o in outcomes] == [f"evt_{n:02}" for n in range(45)]
    assert {o.status for o in outcomes} == {"processed"}
    assert {stored(db, f"evt_{n:02}").attempts for n in range(45)} == {1}


def test_an_event_that_keeps_failing_is_dead_after_the_last_attempt(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(TXN_URL, status=500, json=STRIPE_500)
    with frozen_at(NOW):
        deliver(client, fee_event("evt_doomed"))
    statuses = []
    for hours in range(5):  # far past every backoff
        with frozen_at(NOW + timedelta(hours=hours)):
            statuses += [o.status for o in drain(database(app), payments(app), POLICY)]

    row = stored(db, "evt_doomed")
    assert statuses == ["failed", "failed", "dead"]
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", 3, None)
    assert row.last_error and "PaymentsError" in row.last_error


def test_an_object_stripe_does_not_have_makes_the_event_dead_at_once(
    app: Flask, client: FlaskClient, db: Session, frozen: None, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(TXN_URL, status=404, json=STRIPE_404)
    deliver(client, fee_event("evt_missing"))

    outcomes = drain(database(app), payments(app), POLICY)

    row = stored(db, "evt_missing")
    assert [o.status for o in outcomes] == ["dead"]
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error and "not_found" in row.last_error


def test_a_failure_is_not_recorded_over_an_outcome_another_worker_recorded_first(
    app: Flask, client: FlaskClient, db: Session, frozen: None
) -> None:
    deliver(client, ignored_event("evt_raced"))
    drain(database(app), payments(app), POLICY)  # processed: attempts is now 1
    row = stored(db, "evt_raced")

    status = record_failure(
        db,
        row.id,
        seen_attempts=0,  # what a slower worker saw when it claimed
        error="RuntimeError: late",
        now=NOW,
        max_attempts=3,
        base_delay_seconds=60,
        max_delay_seconds=3600,
    )
    db.commit()

    assert status is None
    assert (stored(db, "evt_raced").status, stored(db, "evt_raced").last_error) == (
        "processed",
        None,
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_worker_skips_the_event_another_worker_holds(
    app: Flask, client: FlaskClient, frozen: None
) -> None:
    deliver(
        client,
        ignored_event("evt_first", created=NOW_TS - 20),
        ignored_event("evt_second", created=NOW_TS - 10),
    )
    one, two, three = (database(app).session() for _ in range(3))

    def claimed(session: Session) -> str | None:
        event = claim_event(session, NOW)
        return None if event is None else event.stripe_event_id

    try:
        held_by_one = claimed(one)
        held_by_two = claimed(two)
        nothing_left = claimed(three)
        three.rollback()
        one.rollback()  # the first worker gives up its claim
        released = claimed(three)
    finally:
        for session in (one, two, three):
            session.rollback()
            session.close()

    assert (held_by_one, held_by_two, nothing_left) == ("evt_first", "evt_second", None)
    assert released == "evt_first"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_draining_at_once_never_process_the_same_event_twice(
    app: Flask, client: FlaskClient, db: Session, frozen: None
) -> None:
    ids = [f"evt_shared_{n:02d}" for n in range(24)]
    deliver(
        client,
        *(ignored_event(event_id, created=NOW_TS - 100 + n) for n, event_id in enumerate(ids)),
    )
    start = threading.Barrier(2)
    processed: list[list[str]] = [[], []]

    def work(slot: int) -> None:
        start.wait()
        outcomes = drain(database(app), payments(app), POLICY)
        processed[slot] = [o.stripe_event_id for o in outcomes]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(processed[0] + processed[1]) == ids
    assert not set(processed[0]) & set(processed[1])
    rows = db.scalars(select(StripeEvent)).all()
    db.commit()
    assert {(row.status, row.attempts) for row in rows} == {("processed", 1)}


def test_worker_once_drains_and_says_how_many(
    client: FlaskClient, runner: FlaskCliRunner, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(TXN_URL, status=500, json=STRIPE_500)
    with frozen_at(NOW):
        deliver(client, ignored_event("evt_one"), ignored_event("evt_two"), fee_event("evt_bad"))
        result = runner.invoke(main, ["worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "2 processed, 1 failed, 0 dead" in result.output
    assert stored(db, "evt_one").status == "processed"
    assert stored(db, "evt_bad").status == "failed"


def test_replaying_an_event_by_id_processes_it_again_with_a_fresh_retry_budget(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, db: Session, frozen: None
) -> None:
    deliver(client, ignored_event("evt_again"))
    drain(database(app), payments(app), POLICY)

    result = runner.invoke(main, ["events", "replay", "evt_again"])

    assert result.exit_code == 0, result.output
    assert "evt_again radar.early_fraud_warning.created: processed" in result.output
    row = stored(db, "evt_again")
    assert (row.status, row.attempts) == ("processed", 1)


def test_replaying_a_dead_event_that_still_fails_says_so_and_exits_1(
    client: FlaskClient,
    runner: FlaskCliRunner,
    db: Session,
    frozen: None,
    stripe_http: responses.RequestsMock,
) -> None:
    stripe_http.get(TXN_URL, status=404, json=STRIPE_404)
    deliver(client, fee_event("evt_gone"))
    runner.invoke(main, ["worker", "--once"])

    result = runner.invoke(main, ["events", "replay", "evt_gone"])

    assert result.exit_code == 1
    assert "evt_gone charge.updated: dead" in result.output
    assert stored(db, "evt_gone").status == "dead"


def test_replaying_failed_events_processes_every_failed_and_dead_one(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, db: Session, frozen: None
) -> None:
    deliver(client, ignored_event("evt_was_dead"), ignored_event("evt_was_failed"))
    deliver(client, ignored_event("evt_fine"))
    rows = {e: stored(db, e) for e in ("evt_was_dead", "evt_was_failed")}
    for event_id, dead in (("evt_was_dead", True), ("evt_was_failed", False)):
        record_failure(
            db,
            rows[event_id].id,
            seen_attempts=0,
            error="PaymentsError: Stripe lookup failed (unavailable)",
            now=NOW,
            max_attempts=8,
            base_delay_seconds=3600,
            max_delay_seconds=3600,
            dead_at_once=dead,
        )
    db.commit()
    listing = runner.invoke(main, ["events", "failed"])

    result = runner.invoke(main, ["events", "replay", "--failed"])

    assert "evt_was_dead" in listing.output and "evt_was_failed" in listing.output
    assert "evt_fine" not in listing.output
    assert result.exit_code == 0, result.output
    assert "replayed: 2 processed, 0 failed, 0 dead" in result.output
    assert stored(db, "evt_was_dead").status == "processed"
    assert stored(db, "evt_was_failed").status == "processed"
    assert stored(db, "evt_fine").status == "pending"  # not failed: left to the worker


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "replay", "evt_known", "evt_nowhere"], "no stored event evt_nowhere"),
        (["events", "replay"], "give event ids or --failed"),
        (["events", "replay", "--failed", "evt_known"], "give event ids or --failed"),
        (["events", "replay", "evt_live"], "evt_live skipped"),
    ],
)
def test_replay_refuses_unknown_ids_and_bad_usage_with_exit_2_and_changes_nothing(
    client: FlaskClient,
    runner: FlaskCliRunner,
    db: Session,
    frozen: None,
    args: list[str],
    message: str,
) -> None:
    live = ignored_event("evt_live")
    live["livemode"] = True
    deliver(client, ignored_event("evt_known"), live)

    result = runner.invoke(main, args)

    assert result.exit_code == 2
    assert message in result.output
    assert stored(db, "evt_known").status == "pending"
    assert stored(db, "evt_live").status == "skipped"


def test_the_worker_process_applies_events_and_stops_cleanly_on_sigterm(
    client: FlaskClient, db: Session, db_url: str, tmp_path: Path
) -> None:
    deliver(client, ignored_event("evt_background", created=int(time.time()) - 5))
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WORKER_IDLE_SECONDS": "0.2",
    }
    donations = Path(sys.executable).parent / "donations"
    process = subprocess.Popen(
        [str(donations), "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while stored(db, "evt_background").status != "processed":
            assert time.monotonic() < deadline, "the worker did not process the event"
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, errors
    assert "SIGTERM, stopping" in errors


def test_the_error_kept_on_an_event_leaves_out_the_values_a_database_error_carries() -> None:
    driver_error = Exception(
        'duplicate key value violates unique constraint "uq_donors_email"\n'
        "DETAIL:  Key (email)=(reader@example.org) already exists."
    )
    error = IntegrityError(
        "INSERT INTO donors (email) VALUES (%(email)s)",
        {"email": "reader@example.org"},
        driver_error,
    )

    text = describe_error(error)

    assert text == (
        'IntegrityError: Exception: duplicate key value violates unique constraint "uq_donors_email"'
    )


def test_the_worker_prunes_old_magic_links_and_appeal_counters_once_a_day(
    app: Flask, db: Session
) -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    donor = Donor(email="pruned@example.org", created_at=now, updated_at=now)
    db.add(donor)
    db.flush()

    def link(name: str, age_days: int, *, issued: bool, used: bool, lifetime: timedelta) -> None:
        at = now - timedelta(days=age_days)
        db.add(
            ManageLink(
                donor_id=donor.id,
                locale=name,  # tells the rows apart below
                token_hash=f"{name:0<64}"[:64] if issued else None,
                requested_at=at,
                issued_at=at if issued else None,
                expires_at=at + lifetime if issued else None,
                used_at=at + timedelta(minutes=1) if used else None,
            )
        )

    half_hour = timedelta(minutes=30)
    link("old-used", 40, issued=True, used=True, lifetime=half_hour)
    link("old-expired", 40, issued=True, used=False, lifetime=half_hour)
    link("old-unsent", 40, issued=False, used=False, lifetime=half_hour)
    link("old-but-open", 40, issued=True, used=False, lifetime=timedelta(days=60))
    link("recent-used", 3, issued=True, used=True, lifetime=half_hour)
    for age in (800, 729, 1):
        count_event(db, "spring", "a", "seen", (now - timedelta(days=age)).date(), by=5)
    db.commit()

    pruning = Pruning.from_settings(app.extensions["donations.db"], app.config)
    assert (pruning.links_keep_days, pruning.counters_keep_days) == (30, 730)
    with frozen_at(now):
        assert pruning.run() == {"manage_links": 3, "appeal_counters": 1}
        assert pruning.run() == {}  # not due again until tomorrow
    db.expire_all()
    assert sorted(db.scalars(select(ManageLink.locale))) == ["old-but-open", "recent-used"]
    assert sorted(db.scalars(select(AppealCounter.day))) == [
        (now - timedelta(days=729)).date(),
        (now - timedelta(days=1)).date(),
    ]

    keep_for_ever = Pruning(app.extensions["donations.db"], links_keep_days=0, counters_keep_days=0)
    with frozen_at(now + timedelta(days=5000)):
        assert keep_for_ever.run() == {}
    assert len(db.scalars(select(ManageLink.id)).all()) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_deadlock_with_another_worker_is_retried_at_once_not_counted_as_a_failure(
    app: Flask, client: FlaskClient, frozen: None
) -> None:
    """Two workers can each hold what the other's next statement needs (here:
    another worker's batch inserted this donor and then asks for this charge's
    lock, which this worker took first). PostgreSQL breaks the cycle by
    aborting one transaction; the aborted event is applied again at once,
    not put off for a retry's backoff as if it had failed."""
    email = "deadlock.donor@example.org"
    obj = event_factory.charge(
        "ch_deadlock_1", amount=2500, created=NOW_TS - 50, payment_intent=None, email=email
    )
    deliver(
        client, make_event("charge.succeeded", obj, event_id="evt_deadlock", created=NOW_TS - 50)
    )
    other = database(app).session()
    other.add(Donor(email=email, name="Other Worker"))
    other.flush()  # uncommitted: this worker's insert of the same donor waits for it
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(process_next(database(app), payments(app), POLICY))
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _waiting_for_a_lock(other):
            time.sleep(0.05)
        # The other worker now asks for the charge's lock, which the waiting one holds.
        other.execute(select(func.pg_advisory_xact_lock(func.hashtext("ch_deadlock_1"))))
    finally:
        other.rollback()
        other.close()
        worker.join(timeout=30)
    assert [(o.stripe_event_id, o.status) for o in outcome] == [("evt_deadlock", "processed")]


def _waiting_for_a_lock(session: Session) -> bool:
    """Whether another backend of this database waits for a lock."""
    waiting = session.scalar(
        text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()"
        )
    )
    return bool(waiting)
