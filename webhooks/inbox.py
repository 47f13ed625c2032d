"""The inbox of stored Stripe events: one row per Stripe event id, its raw
body, and where it is in processing (pending, processed, failed, dead,
skipped). Owns storing, claiming and marking events.

Imports no Flask and no `stripe`; never commits: the receiver, the worker loop
and the CLI own their transactions.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.clock import backoff
from app.db import Base, dialect_of, one_of

STATUSES = ("pending", "processed", "failed", "dead", "skipped")
DUE_STATUSES = ("pending", "failed")
# The due statuses as SQL, written into the claims (not bound) so that the
# planner can use the partial index whose predicate this is.
DUE_PREDICATE = one_of("status", DUE_STATUSES)
ERROR_MAX_CHARS = 2000
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # what no id, type or version holds
# The columns a stored event sets (event_values), the rest keep their defaults.
STORED_COLUMNS = (
    "stripe_event_id",
    "type",
    "api_version",
    "livemode",
    "stripe_created_at",
    "stripe_object_id",
    "affinity",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "received_at",
)
# A Stripe `created` we can store: not before 1970, not past the year 9999
# (datetime's and the columns' range); anything else is not a real event.
CREATED_MAX = 253_402_300_799


class StripeEvent(Base):
    """A Stripe event as delivered to our webhook endpoint, verified, with its
    processing state. `payload` is the raw body exactly as signed."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(255))
    api_version: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    stripe_created_at: Mapped[datetime] = mapped_column()  # the event's `created`
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))  # data.object.id
    # Shared by events about one customer or payment (affinity_of): a lane's share.
    affinity: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    processed_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The worker's claim: due statuses, oldest next_attempt_at first.
        Index("ix_stripe_events_status_next_attempt_at", "status", "next_attempt_at"),
        # ... in Stripe's order: the due events walked oldest first, so a claim
        # reads its batch's rows instead of sorting the whole backlog.
        Index(
            "ix_stripe_events_due_order",
            "stripe_created_at",
            "stripe_event_id",
            postgresql_where=text(DUE_PREDICATE),
            sqlite_where=text(DUE_PREDICATE),
        ),
        Index("ix_stripe_events_stripe_object_id", "stripe_object_id"),
    )


@dataclass(frozen=True)
class IncomingEvent:
    """What the receiver extracted from a verified body."""

    stripe_event_id: str
    type: str
    api_version: str | None
    livemode: bool
    created: int  # Stripe's Unix timestamp
    stripe_object_id: str | None
    payload: str
    affinity: int = 0


class NotAnEvent(ValueError):
    """Parsed JSON that is not a Stripe event (no id, type, created, ...)."""


def _text(value: Any, limit: int) -> str | None:
    """A short printable string (ids, types, versions hold no control character)."""
    if isinstance(value, str) and 0 < len(value) <= limit and CONTROL.search(value) is None:
        return value
    return None


def read_event(payload: str, data: Any) -> IncomingEvent:
    """The fields we store from a parsed event body; NotAnEvent when it is not one."""
    if not isinstance(data, dict):
        raise NotAnEvent("the body is not a JSON object")
    event_id = _text(data.get("id"), 255)
    event_type = _text(data.get("type"), 255)
    if event_id is None or event_type is None:
        raise NotAnEvent("an event needs a string id and type")
    created = data.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise NotAnEvent("an event needs an integer created")
    if created > CREATED_MAX:
        raise NotAnEvent("an event's created is out of range")
    livemode = data.get("livemode", False)
    if not isinstance(livemode, bool):
        raise NotAnEvent("livemode must be a boolean")
    api_version = data.get("api_version")
    if api_version is not None and _text(api_version, 64) is None:
        raise NotAnEvent("api_version must be a short string")
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return IncomingEvent(
        stripe_event_id=event_id,
        type=event_type,
        api_version=api_version,
        livemode=livemode,
        created=created,
        stripe_object_id=_text(object_id, 255),
        payload=payload,
        affinity=affinity_of(obj),
    )


# The fields of an event's object that name what it is about, the widest
# first: a customer (every object of a membership, and a gift's when Checkout
# made one), then a payment (a guest's gift: its session, intent, charge,
# refunds, disputes; an invoice payment's intent), then its own id.
AFFINITY_FIELDS = ("customer", "payment_intent", "charge", "invoice")


def affinity_of(obj: Any) -> int:
    """A number (0 to 2**31 - 1) that events about one customer or one payment
    share, from the first of AFFINITY_FIELDS the object names (an id or an
    expanded object), else its own id: the worker's lanes each claim the
    events whose affinity falls to them, so related events stay in one lane.
    Only a hint for spreading work: 0 when nothing names anything."""
    if not isinstance(obj, dict):
        return 0
    payment = obj.get("payment")
    candidates = [obj.get(name) for name in AFFINITY_FIELDS]
    if isinstance(payment, dict):  # an invoice payment: {"type": ..., "payment_intent": ...}
        candidates.insert(1, payment.get("payment_intent"))
    candidates.append(obj.get("id"))
    for found in candidates:
        if isinstance(found, dict):
            found = found.get("id")
        key = _text(found, 255)
        if key is not None:
            return zlib.crc32(key.encode()) & 0x7FFFFFFF
    return 0


def store_event(
    target: Session | Connection, incoming: IncomingEvent, *, skipped: bool, now: datetime
) -> bool:
    """Insert the event unless its Stripe id is already stored (also when another
    request inserts it at the same moment). True when this call stored it.

    One statement, one round trip: INSERT ... ON CONFLICT DO NOTHING RETURNING id
    (a row back means ours; rowcount is not relied on). `target` is a Session
    or, for the webhook route, a bare Connection (no ORM unit of work)."""
    values = event_values(incoming, skipped=skipped, now=now)
    return target.execute(_store_statement(dialect_of(target)), values).first() is not None


def event_values(incoming: IncomingEvent, *, skipped: bool, now: datetime) -> dict[str, Any]:
    """The row `store_event` inserts, as the statement's parameters."""
    return {
        "stripe_event_id": incoming.stripe_event_id,
        "type": incoming.type,
        "api_version": incoming.api_version,
        "livemode": incoming.livemode,
        "stripe_created_at": datetime.fromtimestamp(incoming.created, UTC),
        "stripe_object_id": incoming.stripe_object_id,
        "affinity": incoming.affinity,
        "payload": incoming.payload,
        "status": "skipped" if skipped else "pending",
        "attempts": 0,
        "next_attempt_at": None if skipped else now,
        "received_at": now,
    }


@cache
def _store_statement(dialect: str) -> Any:
    """Built once per dialect; the values come as parameters."""
    table = cast(Table, StripeEvent.__table__)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(table.c.id)
    )


def claim_event(
    session: Session, now: datetime, *, stripe_event_id: str | None = None
) -> StripeEvent | None:
    """Lock and return the next due event (pending or failed, next_attempt_at
    reached; Stripe's oldest first), or that one event when `stripe_event_id`
    is given. On PostgreSQL rows other workers hold are skipped (FOR UPDATE
    SKIP LOCKED), so any number of workers share the inbox; SQLite has no row
    locks (one worker; the transaction already holds the write lock)."""
    query = select(StripeEvent).where(text(DUE_PREDICATE), StripeEvent.next_attempt_at <= now)
    if stripe_event_id is not None:
        query = query.where(StripeEvent.stripe_event_id == stripe_event_id)
    query = (
        query.order_by(StripeEvent.stripe_created_at, StripeEvent.stripe_event_id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).first()


@dataclass(frozen=True)
class ClaimedEvent:
    """A due event claimed (and locked until the transaction ends) by a batch."""

    id: int
    stripe_event_id: str
    type: str
    attempts: int
    payload: str


def claim_events(
    session: Session, now: datetime, *, limit: int, share: tuple[int, int] | None = None
) -> list[ClaimedEvent]:
    """Lock and return up to `limit` due events, Stripe's oldest first, in one
    statement (the batch's claim; rows other workers hold are skipped, as in
    `claim_event`); with `share` (lane, lanes), only those whose affinity
    modulo `lanes` is `lane`. Plain rows: the batch marks them with
    `mark_all_processed`."""
    e = StripeEvent
    query = select(e.id, e.stripe_event_id, e.type, e.attempts, e.payload).where(
        text(DUE_PREDICATE), e.next_attempt_at <= now
    )
    if share is not None and share[1] > 1:
        query = query.where(e.affinity % share[1] == share[0])
    query = (
        query.order_by(e.stripe_created_at, e.stripe_event_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ClaimedEvent(*row) for row in session.execute(query)]


def mark_all_processed(session: Session, event_ids: Sequence[int], now: datetime) -> None:
    """`mark_processed` for the claimed events of a batch, in one statement."""
    if not event_ids:
        return
    session.execute(
        update(StripeEvent)
        .where(StripeEvent.id.in_(list(event_ids)))
        .values(
            status="processed",
            attempts=StripeEvent.attempts + 1,
            last_attempt_at=now,
            processed_at=now,
            next_attempt_at=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )


def mark_processed(session: Session, event: StripeEvent, now: datetime) -> None:
    event.status = "processed"
    event.attempts += 1
    event.last_attempt_at = now
    event.processed_at = now
    event.next_attempt_at = None
    event.last_error = None
    session.flush()


def record_failure(
    session: Session,
    event_id: int,
    *,
    seen_attempts: int,
    error: str,
    now: datetime,
    max_attempts: int,
    base_delay_seconds: float,
    max_delay_seconds: float,
    dead_at_once: bool = False,
) -> str | None:
    """Count a failed attempt of the event claimed with `seen_attempts`: failed
    with the next attempt after a backoff, or dead after the last attempt (or at
    once). Returns the new status, or None when someone else recorded an outcome
    for that attempt in the meantime (the claim's lock was released by the
    rollback), so a failure is never counted twice or over a success."""
    attempts = seen_attempts + 1
    dead = dead_at_once or attempts >= max_attempts
    status = "dead" if dead else "failed"
    next_attempt_at = (
        None if dead else now + backoff(attempts, base_delay_seconds, max_delay_seconds)
    )
    result = session.execute(
        update(StripeEvent)
        .where(
            StripeEvent.id == event_id,
            StripeEvent.status.in_(DUE_STATUSES),
            StripeEvent.attempts == seen_attempts,
        )
        .values(
            status=status,
            attempts=attempts,
            last_error=error[:ERROR_MAX_CHARS],
            last_attempt_at=now,
            next_attempt_at=next_attempt_at,
        )
        .execution_options(synchronize_session=False)
    )
    return status if getattr(result, "rowcount", 0) == 1 else None


def find_events(session: Session, stripe_event_ids: Sequence[str]) -> list[StripeEvent]:
    """The stored events with these Stripe ids (unknown ids are simply absent)."""
    if not stripe_event_ids:
        return []
    query = select(StripeEvent).where(StripeEvent.stripe_event_id.in_(list(stripe_event_ids)))
    return list(session.scalars(query))


def list_failed(session: Session) -> list[StripeEvent]:
    """Events that failed (and will be retried) or are dead, Stripe's oldest first."""
    query = (
        select(StripeEvent)
        .where(StripeEvent.status.in_(("failed", "dead")))
        .order_by(StripeEvent.stripe_created_at, StripeEvent.stripe_event_id)
    )
    return list(session.scalars(query))


def reset_for_replay(session: Session, events: Sequence[StripeEvent], now: datetime) -> None:
    """Make events due again now, with a fresh retry budget (attempts back to 0):
    an operator replays after fixing a cause, and a passing glitch during the
    replay should not send the event straight back to dead. The last error is
    kept until the next attempt replaces it. Skipped events are never replayed."""
    for event in events:
        if event.status == "skipped":
            raise ValueError(f"{event.stripe_event_id} was skipped (livemode) and is not replayed")
        event.status = "pending"
        event.attempts = 0
        event.next_attempt_at = now
    session.flush()
