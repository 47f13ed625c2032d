"""The ledger CSV's rows: rows_query (the one SELECT every export and report
counts), Row, row_from, iter_rows and their formatting (CSV_COLUMNS, format_row).
Reads only: never posts or changes the journal; no Flask, no `stripe`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from app.donate.models import Checkout
from app.donors import Donor
from app.ledger.models import JournalEntry
from app.ledger.records import Dispute, Membership, Payment, Refund
from app.money import format_plain

CSV_COLUMNS = (
    "occurred_at",
    "kind",
    "donor_email",
    "donor_name",
    "currency",
    "amount",
    "fee",
    "net",
    "donor_currency",
    "donor_amount",
    "frequency",
    "campaign",
    "utm_source",
    "utm_medium",
    "utm_content",
    "utm_term",
    "stripe_id",
)


@dataclass(frozen=True)
class Row:
    """One CSV row before formatting."""

    occurred_at: datetime
    kind: str
    donor_email: str | None
    donor_name: str | None
    currency: str
    amount_minor: int
    fee_minor: int | None
    net_minor: int | None
    donor_currency: str
    donor_amount_minor: int
    frequency: str | None
    campaign: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_content: str | None
    utm_term: str | None
    stripe_id: str


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rows_query(
    since: datetime | None = None, until: datetime | None = None, *, records: bool = True
) -> Select[Any]:
    """The CSV's rows as one SELECT with labelled columns and no order: every
    movement joined to its settlement and records. `iter_rows` streams it;
    the finance views (app.finance.reports) filter, page and total it, so every
    report counts exactly the rows of the export. `currency`, `amount_minor`,
    `fee_minor` and `net_minor` are the settlement's once it is known.
    `records=False` leaves out the joins to payments, memberships, checkouts
    and donors (one row each at most, so the same rows): for totals that need
    only the money, without their cost."""
    entry = aliased(JournalEntry, name="e")
    settled = aliased(JournalEntry, name="s")
    is_settled = settled.id.is_not(None)
    # What the donor was charged: a payment's or refund's own entry has it; a
    # dispute's or refund failure's entry has the balance transaction's
    # figures, so when Stripe converted, the dispute's or refund's amount in
    # the charge's currency (out negative, back positive) is the donor's.
    dispute_converted = and_(Dispute.id.is_not(None), Dispute.currency != entry.currency)
    refund_converted = and_(Refund.id.is_not(None), Refund.currency != entry.currency)
    donor_currency = case(
        (dispute_converted, Dispute.currency),
        (refund_converted, Refund.currency),
        else_=entry.currency,
    )
    donor_amount = case(
        (and_(dispute_converted, entry.kind == "dispute"), -Dispute.amount_minor),
        (dispute_converted, Dispute.amount_minor),
        (refund_converted, Refund.amount_minor),
        else_=entry.amount_minor,
    )
    columns: list[Any] = [
        entry.occurred_at.label("occurred_at"),
        entry.key.label("key"),
        entry.kind.label("kind"),
        entry.stripe_object_id.label("stripe_id"),
        entry.stripe_charge_id.label("stripe_charge_id"),
        func.coalesce(
            settled.stripe_balance_transaction_id, entry.stripe_balance_transaction_id
        ).label("balance_transaction"),
        entry.donor_id.label("entry_donor_id"),
        donor_currency.label("donor_currency"),
        donor_amount.label("donor_amount_minor"),
        func.coalesce(settled.currency, entry.currency).label("currency"),
        case((is_settled, settled.amount_minor), else_=entry.amount_minor).label("amount_minor"),
        case((is_settled, settled.fee_minor), else_=entry.fee_minor).label("fee_minor"),
        case((is_settled, settled.net_minor), else_=entry.net_minor).label("net_minor"),
    ]
    donor_id = func.coalesce(Payment.donor_id, Membership.donor_id, entry.donor_id)
    if records:
        columns += [
            donor_id.label("donor_id"),
            Donor.email.label("donor_email"),
            Donor.name.label("donor_name"),
            Payment.kind.label("payment_kind"),
            func.coalesce(Membership.interval, Checkout.frequency).label("payment_frequency"),
            Checkout.campaign.label("campaign"),
            Checkout.utm_source.label("utm_source"),
            Checkout.utm_medium.label("utm_medium"),
            Checkout.utm_content.label("utm_content"),
            Checkout.utm_term.label("utm_term"),
        ]
    query = (
        select(*columns)
        .select_from(entry)
        .outerjoin(
            settled,
            and_(
                settled.kind == "settlement",
                settled.stripe_object_id == entry.stripe_object_id,
                entry.kind.in_(("donation", "membership_payment", "refund")),
            ),
        )
        .outerjoin(
            Dispute,
            and_(
                entry.kind.in_(("dispute", "dispute_reversal")),
                Dispute.stripe_dispute_id == entry.stripe_object_id,
            ),
        )
        .outerjoin(
            Refund,
            and_(entry.kind == "refund_failure", Refund.stripe_refund_id == entry.stripe_object_id),
        )
        .where(entry.kind != "settlement")
    )
    if records:
        query = (
            query.outerjoin(Payment, Payment.stripe_charge_id == entry.stripe_charge_id)
            .outerjoin(
                Membership, Membership.stripe_subscription_id == Payment.stripe_subscription_id
            )
            .outerjoin(
                Checkout, Checkout.id == func.coalesce(Payment.checkout_id, Membership.checkout_id)
            )
            .outerjoin(Donor, Donor.id == donor_id)
        )
    if since is not None:
        query = query.where(entry.occurred_at >= since)
    if until is not None:
        query = query.where(entry.occurred_at < until)
    return query


def row_from(result: Any) -> Row:
    """A Row from one result of `rows_query` (anything with its labels as attributes)."""
    kind = result.kind
    if kind in ("payout", "payout_failure", "stripe_fee", "adjustment"):
        frequency = None
    elif result.payment_kind == "once" or (result.payment_kind is None and kind == "donation"):
        frequency = "once"
    else:
        frequency = result.payment_frequency
    return Row(
        occurred_at=_as_utc(result.occurred_at),
        kind=kind,
        donor_email=result.donor_email,
        donor_name=result.donor_name,
        currency=result.currency,
        amount_minor=result.amount_minor,
        fee_minor=result.fee_minor,
        net_minor=result.net_minor,
        donor_currency=result.donor_currency,
        donor_amount_minor=result.donor_amount_minor,
        frequency=frequency,
        campaign=result.campaign,
        utm_source=result.utm_source,
        utm_medium=result.utm_medium,
        utm_content=result.utm_content,
        utm_term=result.utm_term,
        stripe_id=result.stripe_id,
    )


def iter_rows(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> Iterator[Row]:
    """Every movement, oldest first, joined to its settlement and records.
    Streams (yield_per), so memory stays flat however long the ledger is."""
    query = rows_query(since, until)
    columns = query.selected_columns
    query = query.order_by(columns.occurred_at, columns.key).execution_options(yield_per=1000)
    for result in session.execute(query):
        yield row_from(result)


def guard_formula(value: str | None) -> str:
    """Text a person typed, safe for a spreadsheet: a leading = + - @ (or a
    tab/CR that some programs skip) gets a ' in front."""
    if not value:
        return ""
    if value[0] in "=+-@\t\r":
        return "'" + value
    return value


def format_timestamp(value: datetime) -> str:
    return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_row(row: Row) -> list[str]:
    def money(minor: int | None, currency: str) -> str:
        return "" if minor is None else format_plain(minor, currency)

    return [
        format_timestamp(row.occurred_at),
        row.kind,
        guard_formula(row.donor_email),
        guard_formula(row.donor_name),
        row.currency,
        money(row.amount_minor, row.currency),
        money(row.fee_minor, row.currency),
        money(row.net_minor, row.currency),
        row.donor_currency,
        money(row.donor_amount_minor, row.donor_currency),
        row.frequency or "",
        guard_formula(row.campaign),
        guard_formula(row.utm_source),
        guard_formula(row.utm_medium),
        guard_formula(row.utm_content),
        guard_formula(row.utm_term),
        row.stripe_id,
    ]


def export_rows(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> Iterator[list[str]]:
    """The ledger CSV's rows (without the header, see CSV_COLUMNS), oldest first."""
    for row in iter_rows(session, since, until):
        yield format_row(row)
