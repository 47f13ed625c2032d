"""POST /webhooks/stripe: verify Stripe's signature on the raw body, store the
event under its Stripe id, answer 2xx once it is committed.

Never calls Stripe and never touches the ledger (the worker does); never logs
more than an event's id and type. Verification cannot be switched off.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import psycopg
from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError

from app.clock import utcnow
from app.extensions import database
from app.observe.metrics import WEBHOOK_DELIVERIES
from webhooks.inbox import (
    IncomingEvent,
    NotAnEvent,
    event_values,
    read_event,
    store_event,
    store_event_sql,
)

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576  # 1 MiB
TOLERANCE_SECONDS = 300  # either way: stale and future timestamps are refused


def signature_problem(body: bytes, header: str | None, secrets: list[str], now: int) -> str | None:
    """None when `header` carries a v1 signature of `body` made with one of
    `secrets` at a timestamp within the tolerance of `now`; otherwise why not.
    Stripe signs "{t}.{raw body}" with HMAC-SHA256; any matching v1 passes."""
    if not header:
        return "missing signature header"
    timestamp: str | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and timestamp is None:
            timestamp = value
        elif key == "v1" and value.isascii():
            signatures.append(value.encode())
    if timestamp is None or not signatures:
        return "malformed signature header"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "malformed timestamp"
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return "timestamp outside the tolerance"
    signed = timestamp.encode() + b"." + body  # the t exactly as Stripe sent it
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    return None if matched else "no matching signature"


def _refuse(status: int, reason: str) -> tuple[dict[str, str], int]:
    log.warning("webhook refused (%s): %s", status, reason)
    WEBHOOK_DELIVERIES.labels("refused").inc()
    return {"error": reason}, status


@bp.post("/webhooks/stripe")
def receive_stripe_event() -> ResponseReturnValue:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refuse(413, "body too large")
    # A body without Content-Length (chunked) is read up to one byte past the
    # limit, never further (Werkzeug stops at max_content_length): over is 413.
    request.max_content_length = MAX_BODY_BYTES + 1
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        return _refuse(413, "body too large")

    secrets: list[str] = current_app.config["STRIPE_WEBHOOK_SECRETS"]
    problem = signature_problem(
        body, request.headers.get("Stripe-Signature"), secrets, int(utcnow().timestamp())
    )
    if problem is not None:
        return _refuse(400, problem)
    try:
        text = body.decode("utf-8")
        data: Any = json.loads(text)
        incoming = read_event(text, data)
    except UnicodeDecodeError:
        return _refuse(400, "body is not UTF-8")
    except NotAnEvent as exc:
        return _refuse(400, str(exc))
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return _refuse(400, "body is not JSON")

    payments = current_app.extensions.get("donations.payments")
    our_livemode = bool(getattr(payments, "livemode", False))
    skipped = incoming.livemode != our_livemode
    try:
        stored = _store(incoming, skipped)
    except (OperationalError, psycopg.OperationalError):
        log.warning("webhook %s not stored: database unavailable", incoming.stripe_event_id)
        WEBHOOK_DELIVERIES.labels("unavailable").inc()
        return {"error": "storage unavailable; deliver again"}, 503, {"Retry-After": "5"}
    if not stored:
        outcome = "duplicate"
    elif skipped:
        outcome = "skipped"
    else:
        outcome = "stored"
    log.info("webhook %s %s: %s", incoming.stripe_event_id, incoming.type, outcome)
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    return {"received": outcome}, 200


def _store(incoming: IncomingEvent, skipped: bool) -> bool:
    """Store the event; True when this call stored it (not a duplicate).

    One connection, one statement, no ORM session: on PostgreSQL a raw psycopg
    connection from a pool in autocommit runs the INSERT compiled once
    (SQLAlchemy's Core execution cost more than the statement, profiled), so
    it is committed (and, with synchronous_commit on, flushed to disk) before
    we answer 200: an acknowledged event is durable. No pre-ping: a connection
    the database dropped fails the INSERT, which is then tried once more on a
    fresh one (it is idempotent); a database that is down raises
    OperationalError, a 503, so Stripe delivers again later."""
    db = database()
    values = event_values(incoming, skipped=skipped, now=utcnow())
    if db.dialect != "postgresql":
        with db.engine.connect() as sqlite:
            stored = store_event(sqlite, incoming, skipped=skipped, now=values["received_at"])
            sqlite.commit()
        return stored
    engine = db.single_statement_engine
    statement = store_event_sql(engine.dialect)
    for attempt in (1, 2):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(statement, values)
                return cursor.fetchone() is not None
            finally:
                cursor.close()
        except psycopg.OperationalError:
            connection.invalidate()  # never back into the pool
            if attempt == 2:
                raise
        finally:
            connection.close()
    raise AssertionError("unreachable")
