"""Mutable records beside the ledger, one row per Stripe object and keyed by
its id (unique): payments (charges), refunds, disputes, payouts, memberships
(subscriptions) and the invoice a payment paid.

They hold state (status, outcome, period end) and the joins the ledger's
reports need (donor, checkout, subscription). Money is never counted from
them: the journal is the money. No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    bindparam,
    literal,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.clock import utcnow
from app.db import (
    Base,
    dialect_of,
    execute_prepared,
    first_by,
    insert_missing_entity,
    load_entity,
    update_record,
)
from app.ledger import totals
from app.ledger.models import JournalEntry

PAYMENT_KINDS = ("once", "membership")


class Payment(Base):
    """A successful charge (ch_...), whichever way it was made."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"), index=True)
    # Our checkouts.id, from metadata or client_reference_id; no foreign key:
    # an event may arrive before the checkout row exists.
    checkout_id: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    # What Stripe says was refunded of the captured money (the charge's
    # `amount_refunded` less the rest a partial capture released), as the
    # newest charge event had it; None until an event said. Never money:
    # `ledger verify` compares it with the refunds posted for the charge.
    amount_refunded_minor: Mapped[int | None] = mapped_column(BigInteger)
    amount_refunded_at: Mapped[datetime | None] = mapped_column()
    stripe_created_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('once', 'membership')", name="kind_known"),
        CheckConstraint("currency = lower(currency) AND length(currency) = 3", name="currency_iso"),
    )


class InvoicePayment(Base):
    """Which invoice (and subscription) a payment intent or charge paid: under
    API versions since 2025-03-31 a charge no longer says."""

    __tablename__ = "invoice_payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_refund_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    stripe_created_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Dispute(Base):
    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(32))  # won, lost, warning_closed
    last_event_created_at: Mapped[datetime | None] = mapped_column()
    stripe_created_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Payout(Base):
    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    arrival_at: Mapped[datetime | None] = mapped_column()
    stripe_created_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Membership(Base):
    """A Stripe subscription: a member giving every month or year."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"), index=True)
    checkout_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    interval: Mapped[str | None] = mapped_column(String(8))
    current_period_end: Mapped[datetime | None] = mapped_column()
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    # The `created` of the event that last set the state: older events never
    # take it back.
    last_event_created_at: Mapped[datetime | None] = mapped_column()
    last_stripe_event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@cache
def _row_by_key(model: Any, key_column: str, lock: bool) -> Any:
    query = (
        select(model)
        .where(getattr(model, key_column) == bindparam("key"))
        .execution_options(populate_existing=True)
    )
    return query.with_for_update() if lock else query


def get_or_insert(
    session: Session,
    model: Any,
    key_column: str,
    key: str,
    *,
    lock: bool = False,
    **values: Any,
) -> Any:
    """The row of `model` whose `key_column` is `key`, inserted with `values`
    if missing (insert on conflict do nothing, then read: safe when two
    workers race). Later changes are the caller's updates on the row; `lock`
    holds the row (SELECT ... FOR UPDATE on PostgreSQL) until commit, for
    read-compare-write updates (a row this call inserted is held already).
    The insert returns the new row (one statement); only a row that was
    there is read. Both statements are built once per shape."""
    now = utcnow()
    defaults: dict[str, Any] = {"created_at": now}
    if hasattr(model, "updated_at"):
        defaults["updated_at"] = now
    inserted = insert_missing_entity(
        session, model, {key_column: key, **defaults, **values}, index=[key_column]
    )
    if inserted is not None:  # ours, and held by this transaction until commit
        return inserted
    if dialect_of(session) == "postgresql":
        # The row by a Core SELECT built once, run prepared (the ORM's query
        # cost several times the statement). An object already in the session
        # is read again by the ORM's query instead, as its populate_existing
        # refreshes it (`load_entity` would return it as it is).
        table = model.__table__
        row = (
            execute_prepared(session, _row_by_key_core(table, key_column, lock), {"key": key})
            .mappings()
            .one()
        )
        (pk,) = table.primary_key.columns.keys()
        identity = model.__mapper__.identity_key_from_primary_key([row[pk]])
        if session.identity_map.get(identity) is None:
            return load_entity(session, model, row)
    return session.scalars(_row_by_key(model, key_column, lock), {"key": key}).one()


@cache
def _row_by_key_core(table: Any, key_column: str, lock: bool) -> Any:
    query = select(*table.columns).where(
        table.c[key_column] == bindparam("key", type_=table.c[key_column].type)
    )
    return query.with_for_update() if lock else query


def note_amount_refunded(payment: Payment, amount_minor: int, seen_at: datetime) -> None:
    """Keep the refunded amount of the newest event (created `seen_at`); of
    events of the same second, the larger (refunds only add up, a failed one
    is then newer)."""
    last = payment.amount_refunded_at
    current = payment.amount_refunded_minor
    if not (
        last is None
        or current is None
        or seen_at > last
        or (seen_at == last and amount_minor > current)
    ):
        return
    update_record(payment, {"amount_refunded_minor": amount_minor, "amount_refunded_at": seen_at})


def payment_by_charge(session: Session, charge_id: str) -> Payment | None:
    found: Payment | None = first_by(session, Payment, "stripe_charge_id", charge_id)
    return found


@cache
def _payment_for_posting() -> Any:
    """PostgreSQL: the charge's payment's columns (NULLs when none) and
    whether two journal keys are posted, in one Core statement (run
    prepared), read after the charge's lock is held."""
    posted = [
        select(JournalEntry.id).where(JournalEntry.key == bindparam(key)).exists().label(key)
        for key in ("first_key", "second_key")
    ]
    payments = Payment.__table__
    one = select(literal(1).label("one")).subquery("one")
    return (
        select(*payments.columns, *posted)
        .select_from(one)
        .outerjoin(payments, payments.c.stripe_charge_id == bindparam("charge_id"))
    )


def payment_for_posting(
    session: Session, charge_id: str, keys: tuple[str, str | None]
) -> tuple[Payment | None, set[str]]:
    """Before posting about a charge: take the ledger's lock on it
    (`ledger.totals.lock_object`, unless this transaction holds it), then
    read its payment record and which of `keys` (journal keys; None for
    none) are posted: on PostgreSQL one statement after the lock's, its row
    made into the record without the ORM's loading (`load_entity`).

    The read is a statement of its own, after the lock: in READ COMMITTED a
    statement sees what was committed when it began, so a read in the
    statement that waited for the lock missed what the holder committed
    meanwhile, and a worker wrote an older event's refunded amount over a
    newer one's (found by the several-hosts fault test under load).
    What is posted only grows: a key found posted stays so."""
    first, second = keys
    totals.lock_object(session, charge_id)
    if session.get_bind().dialect.name != "postgresql":
        wanted = [key for key in keys if key]
        found = set(session.scalars(select(JournalEntry.key).where(JournalEntry.key.in_(wanted))))
        return payment_by_charge(session, charge_id), found
    session.flush()  # as autoflush would before a query
    row = (
        execute_prepared(
            session,
            _payment_for_posting(),
            {"charge_id": charge_id, "first_key": first, "second_key": second},
        )
        .mappings()
        .one()
    )
    posted = {
        key for key, column in ((first, "first_key"), (second, "second_key")) if key and row[column]
    }
    if row["id"] is None:
        return None, posted
    columns = {column.key: row[column.key] for column in Payment.__table__.columns}
    payment: Payment = load_entity(session, Payment, columns)
    return payment, posted


def invoice_link(
    session: Session, *, payment_intent_id: str | None = None, charge_id: str | None = None
) -> InvoicePayment | None:
    if payment_intent_id:
        found: InvoicePayment | None = first_by(
            session, InvoicePayment, "stripe_payment_intent_id", payment_intent_id
        )
        if found is not None:
            return found
    if charge_id:
        by_charge: InvoicePayment | None = first_by(
            session, InvoicePayment, "stripe_charge_id", charge_id
        )
        return by_charge
    return None


def membership_by_subscription(session: Session, subscription_id: str) -> Membership | None:
    found: Membership | None = first_by(
        session, Membership, "stripe_subscription_id", subscription_id
    )
    return found


class Invoice(Base):
    """A Stripe invoice (in_...): which subscription it bills. Money is never
    read from it (`amount_paid` includes payments made outside Stripe)."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def invoice_by_id(session: Session, invoice_id: str) -> Invoice | None:
    found: Invoice | None = first_by(session, Invoice, "stripe_invoice_id", invoice_id)
    return found
