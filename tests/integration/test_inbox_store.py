"""Storing an event says truthfully whether this call stored it, on SQLite and
PostgreSQL, through an ORM session and through the bare connection the
webhook route uses (INSERT ... ON CONFLICT DO NOTHING RETURNING: a duplicate
returns no row, whatever the driver reports as rowcount)."""

from __future__ import annotations

import json
import threading

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import create_app
from app.clock import utcnow
from app.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.servers import free_port
from tests.stripe_helpers import make_event, post_event, stripe_object
from webhooks.inbox import IncomingEvent, StripeEvent, affinity_of, read_event, store_event


def incoming(event_id: str) -> IncomingEvent:
    event = make_event("charge.succeeded", stripe_object("charge"), event_id=event_id)
    payload = json.dumps(event)
    return read_event(payload, json.loads(payload))


def test_store_event_is_true_once_then_false_for_the_same_id_through_a_session(
    app: Flask, db: Session
) -> None:
    first = store_event(db, incoming("evt_fresh_1"), skipped=False, now=utcnow())
    again = store_event(db, incoming("evt_fresh_1"), skipped=False, now=utcnow())
    other = store_event(db, incoming("evt_fresh_2"), skipped=True, now=utcnow())
    db.commit()
    assert (first, again, other) == (True, False, True)
    assert db.scalar(select(func.count()).select_from(StripeEvent)) == 2


def test_store_event_through_a_connection_tells_a_duplicate_from_a_new_event(
    app: Flask, db: Session
) -> None:
    database: Database = app.extensions["donations.db"]
    answers = []
    for event_id in ("evt_conn_1", "evt_conn_1", "evt_conn_2"):
        with database.engine.connect() as connection:
            answers.append(store_event(connection, incoming(event_id), skipped=False, now=utcnow()))
            connection.commit()
    assert answers == [True, False, True]
    assert db.scalar(select(func.count()).select_from(StripeEvent)) == 2


def test_of_many_concurrent_stores_of_one_event_exactly_one_says_it_stored_it(
    app: Flask, db: Session
) -> None:
    database: Database = app.extensions["donations.db"]
    event = incoming("evt_race_1")
    answers: list[bool] = []
    barrier = threading.Barrier(6)

    def store() -> None:
        barrier.wait()
        with database.engine.connect() as connection:
            answers.append(store_event(connection, event, skipped=False, now=utcnow()))
            connection.commit()

    threads = [threading.Thread(target=store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [False] * 5 + [True]
    assert db.scalar(select(func.count()).select_from(StripeEvent)) == 1


def test_a_webhook_while_the_database_is_unreachable_is_a_503_so_stripe_retries() -> None:
    app = create_app(
        {
            "APP_ENV": "test",
            "TESTING": True,
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
            "SECRET_KEY": "test-secret-key",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    event = make_event("charge.succeeded", stripe_object("charge"))
    answer = post_event(app.test_client(), event, WEBHOOK_SECRET)
    assert answer.status_code == 503
    assert answer.get_json() == {"error": "storage unavailable; deliver again"}
    app.extensions["donations.db"].dispose()


def test_events_about_one_customer_or_one_payment_share_an_affinity(db: Session) -> None:
    member = {"customer": "cus_A1"}
    guest = {"payment_intent": "pi_G1"}
    of_member = [
        affinity_of(stripe_object("subscription", id="sub_A1", **member)),
        affinity_of(stripe_object("invoice", id="in_A1", **member)),
        affinity_of(stripe_object("charge", id="ch_A1", payment_intent="pi_A1", **member)),
        affinity_of(stripe_object("customer", id="cus_A1")),
        affinity_of({"id": "ch_A2", "customer": {"id": "cus_A1", "object": "customer"}}),
    ]
    of_guest = [
        affinity_of(stripe_object("checkout.session", id="cs_G1", customer=None, **guest)),
        affinity_of(stripe_object("charge", id="ch_G1", customer=None, **guest)),
        affinity_of(stripe_object("payment_intent", id="pi_G1", customer=None)),
        affinity_of(stripe_object("refund", id="re_G1", charge="ch_G1", **guest)),
        affinity_of(
            {"id": "inpay_1", "invoice": "in_X", "payment": {"type": "payment_intent", **guest}}
        ),
    ]
    assert len(set(of_member)) == 1 and len(set(of_guest)) == 1
    assert of_member[0] != of_guest[0]
    assert all(0 <= a < 2**31 for a in of_member + of_guest)
    assert affinity_of(None) == 0 and affinity_of({"id": 7}) == 0

    body = make_event("charge.succeeded", stripe_object("charge", id="ch_A3", **member))
    stored = read_event(json.dumps(body), body)
    assert stored.affinity == of_member[0]
    assert store_event(db, stored, skipped=False, now=utcnow())
    row = db.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == body["id"])).one()
    assert row.affinity == of_member[0]
