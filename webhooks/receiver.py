"""POST /webhooks/stripe: verify Stripe's signature on the raw body, store the
event under its Stripe id, answer 2xx once it is committed.

Never calls Stripe and never touches the ledger (the worker does); never logs
more than an event's id and type. Verification cannot be switched off. The
answer is made here from the body and the signature header; webhooks.wsgi
serves it (reads the request, writes the JSON and the headers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from sqlalchemy.exc import OperationalError

from app.clock import utcnow
from app.db import Database
from app.observe.metrics import WEBHOOK_DELIVERIES
from webhooks.group_commit import GroupCommit
from webhooks.inbox import IncomingEvent, NotAnEvent, event_values, read_event, store_event

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


@dataclass(frozen=True, slots=True)
class Answer:
    """What the route answers: the status, its JSON object and extra headers."""

    status: int
    body: dict[str, str]
    headers: tuple[tuple[str, str], ...] = ()


UNAVAILABLE = Answer(503, {"error": "storage unavailable; deliver again"}, (("Retry-After", "5"),))
# The outcomes' counters, looked up once (a label lookup takes a lock each time).
OUTCOMES = {
    outcome: WEBHOOK_DELIVERIES.labels(outcome)
    for outcome in ("stored", "duplicate", "skipped", "refused", "unavailable")
}


def refuse(status: int, reason: str) -> Answer:
    log.warning("webhook refused (%s): %s", status, reason)
    OUTCOMES["refused"].inc()
    return Answer(status, {"error": reason})


def receive_stripe_event(
    body: bytes,
    signature: str | None,
    secrets: list[str],
    our_livemode: bool,
    store: Callable[[IncomingEvent, bool], bool],
) -> Answer:
    """The answer to a delivery of `body` (at most MAX_BODY_BYTES, read by the
    caller) signed by the `signature` header: 400 unless it is a validly
    signed event, else stored by `store(incoming, skipped)` (True when this
    delivery stored it) and 200 once committed; 503 when the database is unavailable."""
    problem = signature_problem(body, signature, secrets, int(utcnow().timestamp()))
    if problem is not None:
        return refuse(400, problem)
    try:
        text = body.decode("utf-8")
        # orjson: RFC 8259 JSON only (no NaN, no lone surrogate, integers within
        # 64 bits, nesting within 1,024), parsed in about a third of json's time.
        data: Any = orjson.loads(body)
        incoming = read_event(text, data)
    except UnicodeDecodeError:
        return refuse(400, "body is not UTF-8")
    except NotAnEvent as exc:
        return refuse(400, str(exc))
    except ValueError:  # orjson.JSONDecodeError, absurdly deep nesting included
        return refuse(400, "body is not JSON")

    skipped = incoming.livemode != our_livemode
    try:
        stored = store(incoming, skipped)
    except (OperationalError, psycopg.OperationalError):
        log.warning("webhook %s not stored: database unavailable", incoming.stripe_event_id)
        OUTCOMES["unavailable"].inc()
        return UNAVAILABLE
    if not stored:
        outcome = "duplicate"
    elif skipped:
        outcome = "skipped"
    else:
        outcome = "stored"
    log.info("webhook %s %s: %s", incoming.stripe_event_id, incoming.type, outcome)
    OUTCOMES[outcome].inc()
    return Answer(200, {"received": outcome})


class Store:
    """`store` for `receive_stripe_event`: on PostgreSQL through the process's
    group commit (webhooks.group_commit) on the database's single-statement
    pool (autocommit, no pre-ping: a dropped connection fails the INSERT,
    which is tried once more on a fresh one; a database that is down raises
    OperationalError, a 503, so Stripe delivers again later); elsewhere
    (SQLite) one INSERT and its commit on a connection of the engine."""

    def __init__(self, database: Callable[[], Database]) -> None:
        self.database = database
        self._group: GroupCommit | None = None
        self._lock = threading.Lock()

    def __call__(self, incoming: IncomingEvent, skipped: bool) -> bool:
        db = self.database()
        now = utcnow()
        if db.dialect != "postgresql":
            with db.engine.connect() as sqlite:
                stored = store_event(sqlite, incoming, skipped=skipped, now=now)
                sqlite.commit()
            return stored
        group = self._group
        engine = db.single_statement_engine
        if group is None or group.engine is not engine:
            with self._lock:  # one per engine: its deliveries share the batches
                group = self._group
                if group is None or group.engine is not engine:
                    group = self._group = GroupCommit(engine)
        return group.store(event_values(incoming, skipped=skipped, now=now))
