"""The ledger's lock on a charge, on PostgreSQL: what a worker reads about the
charge after taking it is what the worker that held it last committed.

Two workers applying events about one charge (a charge.refunded and an
older charge.succeeded, say) serialise on the lock; the second must see the
first's record, or it writes its older figures over the newer ones (seen
from outside as `ledger verify` failing: "Stripe says 0 usd refunded, the
ledger's refunds add up to 500", in the several-hosts fault test under load).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import Database
from app.ledger import totals
from app.ledger.records import Payment, payment_for_posting
from tests.faults.harness import wait_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

CHARGE = "ch_lock_fresh"
EARLY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATE = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


def waiting_for_an_advisory_lock(db: Session) -> int:
    count = db.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    db.commit()
    return int(count or 0)


def test_a_worker_waiting_for_a_charge_reads_what_the_holder_committed(
    app: Flask, db: Session
) -> None:
    database: Database = app.extensions["donations.db"]
    db.add(
        Payment(
            stripe_charge_id=CHARGE,
            kind="once",
            amount_minor=2500,
            currency="usd",
            status="succeeded",
            amount_refunded_minor=0,
            amount_refunded_at=EARLY,
            stripe_created_at=EARLY,
        )
    )
    db.commit()

    holder = database.session(immediate=False)
    totals.lock_object(holder, CHARGE)  # the first worker takes the charge ...
    holder.execute(
        text(
            "UPDATE payments SET amount_refunded_minor = 500, amount_refunded_at = :late"
            " WHERE stripe_charge_id = :charge"
        ),
        {"late": LATE, "charge": CHARGE},
    )
    seen: dict[str, Any] = {}

    def second_worker() -> None:
        with database.session(immediate=False) as session:
            payment, _ = payment_for_posting(session, CHARGE, (f"payment:{CHARGE}", None))
            assert payment is not None
            seen["refunded"] = (payment.amount_refunded_minor, payment.amount_refunded_at)
            session.rollback()

    waiter = threading.Thread(target=second_worker)
    waiter.start()
    try:  # ... and the second waits for it
        wait_for(
            lambda: waiting_for_an_advisory_lock(db) == 1,
            timeout=10,
            what="the second worker to wait for the charge's lock",
            every=0.025,
        )
        holder.commit()  # the first's refund is in, its lock released
    finally:
        holder.close()
        waiter.join(timeout=30)
    assert not waiter.is_alive()
    refunded, at = seen["refunded"]
    assert refunded == 500
    assert at.replace(tzinfo=UTC) == LATE
