"""The outbox: a job is queued once per key, claimed by one worker at a time
(FOR UPDATE SKIP LOCKED on PostgreSQL), retried with backoff, dead after the
last try with an error that names no person, listed and replayed from the CLI."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ledger, receipts
from app.cli import main
from app.clock import frozen_at
from app.db import Database
from app.donors import find_or_create_donor
from app.ledger.records import Payment
from app.outbox.models import OutboxJob
from app.outbox.queue import claim_job, enqueue
from app.outbox.runner import describe_job_error
from webhooks.worker import Jobs, RetryPolicy, drain

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=3600)


@pytest.fixture
def app_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {**app_config, "MAIL_FOLDER": str(tmp_path / "mail"), "OUTBOX_MAX_ATTEMPTS": 3}


def database(app: Flask) -> Database:
    db: Database = app.extensions["donations.db"]
    return db


def work(app: Flask) -> list[Any]:
    payments = app.extensions["donations.payments"]
    return drain(database(app), payments, POLICY, jobs=Jobs.from_settings(app.config, payments))


def job(db: Session, key: str) -> OutboxJob:
    db.expire_all()
    row = db.scalars(select(OutboxJob).where(OutboxJob.key == key)).one()
    db.commit()
    return row


def payment_without_donor(db: Session, charge_id: str) -> None:
    """A payment the ledger recognised before anyone knew whose it was."""
    with frozen_at(NOW):
        assert ledger.recognise_payment(
            db,
            charge_id=charge_id,
            kind="donation",
            currency="usd",
            amount_minor=2500,
            occurred_at=NOW - timedelta(days=1),
            donor_id=None,
        )
        receipts.queue_receipt(db, charge_id=charge_id)
    db.commit()


def test_a_job_is_queued_once_per_key_however_often_its_cause_repeats(
    app: Flask, db: Session
) -> None:
    first = receipts.queue_receipt(db, charge_id="ch_once")
    again = receipts.queue_receipt(db, charge_id="ch_once")
    db.commit()
    other = enqueue(db, "receipt:ch_other", "receipt", {"charge_id": "ch_other"})
    db.commit()

    rows = db.scalars(select(OutboxJob).order_by(OutboxJob.id)).all()
    assert (first, again, other) == (True, False, True)
    assert [(r.key, r.kind, r.status, r.attempts) for r in rows] == [
        ("receipt:ch_once", "receipt", "pending", 0),
        ("receipt:ch_other", "receipt", "pending", 0),
    ]
    assert rows[0].payload == '{"charge_id": "ch_once"}'


def test_a_job_that_keeps_failing_is_dead_after_the_last_try_and_replays_once_fixed(
    app: Flask, db: Session, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    payment_without_donor(db, "ch_nobody")
    statuses = []
    for minutes in (0, 1, 2, 3, 10):  # past each backoff (60 s, then 120 s)
        with frozen_at(NOW + timedelta(minutes=minutes)):
            statuses += [o.status for o in work(app)]
    dead = job(db, "receipt:ch_nobody")
    listing = runner.invoke(main, ["jobs", "failed"])

    # The cause is fixed: the payment's donor becomes known.
    donor = find_or_create_donor(db, "late@example.org", "Lee Late")
    db.add(
        Payment(
            stripe_charge_id="ch_nobody",
            kind="once",
            amount_minor=2500,
            currency="usd",
            status="succeeded",
            stripe_created_at=NOW - timedelta(days=1),
            donor_id=donor.id,
        )
    )
    db.commit()
    with frozen_at(NOW + timedelta(hours=1)):
        replayed = runner.invoke(main, ["jobs", "replay", "receipt:ch_nobody"])
        again = runner.invoke(main, ["jobs", "replay", "receipt:ch_nobody"])

    assert statuses == ["failed", "failed", "dead"]
    assert (dead.status, dead.attempts, dead.next_attempt_at) == ("dead", 3, None)
    assert dead.last_error == "NotReady: the donor of ch_nobody is not known yet"
    assert "receipt:ch_nobody\treceipt\tdead\tattempts=3\tNotReady" in listing.output
    assert replayed.exit_code == 0, replayed.output
    assert "receipt:ch_nobody receipt: processed" in replayed.output
    assert (job(db, "receipt:ch_nobody").status, job(db, "receipt:ch_nobody").attempts) == (
        "done",
        1,
    )
    assert [p.name for p in (tmp_path / "mail").iterdir()] == ["receipt-ch_nobody.eml"]
    assert again.exit_code == 2
    assert "done already, not run again" in again.output


def test_a_job_of_a_kind_nobody_runs_is_dead_at_once(app: Flask, db: Session) -> None:
    with frozen_at(NOW):
        enqueue(db, "mystery:1", "mystery", {})
    db.commit()
    with frozen_at(NOW + timedelta(seconds=1)):
        outcomes = work(app)

    row = job(db, "mystery:1")
    assert [(o.key, o.status) for o in outcomes] == [("mystery:1", "dead")]
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error == "JobError: no runner for jobs of kind mystery"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "replay"], "give job keys or --failed"),
        (["jobs", "replay", "--failed", "receipt:ch_x"], "give job keys or --failed"),
        (["jobs", "replay", "receipt:ch_unknown"], "no job receipt:ch_unknown"),
    ],
)
def test_jobs_replay_refuses_bad_usage_with_exit_2(
    runner: FlaskCliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(main, args)

    assert result.exit_code == 2
    assert message in result.output


def test_an_error_kept_on_a_job_never_names_the_recipient() -> None:
    refused = smtplib.SMTPRecipientsRefused(
        {"ada@example.org": (550, b"5.1.1 <ada@example.org>: Recipient address rejected")}
    )
    rejected = smtplib.SMTPDataError(554, b"5.7.1 Message to ada@example.org refused")
    broken = KeyError("ada@example.org")

    described = [describe_job_error(e) for e in (refused, rejected, broken)]

    assert described == [
        "SMTPRecipientsRefused: SMTP 550",
        "SMTPDataError: SMTP 554",
        "KeyError",
    ]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_worker_skips_the_job_another_worker_holds(app: Flask, db: Session) -> None:
    with frozen_at(NOW):
        enqueue(db, "receipt:ch_a", "receipt", {"charge_id": "ch_a"})
        enqueue(db, "receipt:ch_b", "receipt", {"charge_id": "ch_b"})
    db.commit()
    one, two, three = (database(app).session() for _ in range(3))
    later = NOW + timedelta(seconds=1)

    def claimed(session: Session) -> str | None:
        found = claim_job(session, later)
        return None if found is None else found.key

    try:
        held = (claimed(one), claimed(two), claimed(three))
        three.rollback()
        one.rollback()
        released = claimed(three)
    finally:
        for session in (one, two, three):
            session.rollback()
            session.close()

    assert held == ("receipt:ch_a", "receipt:ch_b", None)
    assert released == "receipt:ch_a"
