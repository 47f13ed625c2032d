"""The double-entry donor ledger: journal entries keyed by Stripe's immutable
ids, their balanced postings, and the reports read from them (CSV rows,
summary, verification).

Append-only: nothing here updates or deletes an entry or a posting (the
database refuses it too). Posting a key twice is a no-op. No Flask, no
`stripe`, no commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    Select,
    String,
    and_,
    case,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from app.clock import utcnow
from app.db import Base, insert_for, one_of
from app.models import Checkout, Donor
from app.money import format_plain
from app.records import Membership, Payment

ACCOUNTS = (
    "stripe_receivable",  # a payment (or refund) recognised, not yet settled in the balance
    "stripe_balance",
    "revenue_donations",
    "revenue_memberships",
    "refunds",
    "chargebacks",
    "fees_processing",
    "fees_dispute",
    "fees_stripe",  # fees Stripe charges outside a payment (and payout fees)
    "bank",
    "adjustments",
    "fx_conversion",  # balances each currency when Stripe converted
)
# Kinds of movement (the CSV's `kind`), plus `settlement`, which completes a
# recognised payment or refund with its balance transaction's figures.
MOVEMENT_KINDS = (
    "donation",
    "membership_payment",
    "refund",
    "refund_failure",
    "dispute",
    "dispute_reversal",
    "payout",
    "payout_failure",
    "stripe_fee",
    "adjustment",
)
ENTRY_KINDS = (*MOVEMENT_KINDS, "settlement")
PAYMENT_KINDS = ("donation", "membership_payment")

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


class LedgerError(ValueError):
    """An entry that would break the ledger's rules (unbalanced, unknown account)."""



class JournalEntry(Base):
    """One movement (or the settlement of one), posted once under its key."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"), index=True)
    stripe_object_id: Mapped[str] = mapped_column(String(255), index=True)
    # The payment behind the movement, to join it to the records (refunds,
    # disputes and their settlements carry their charge too).
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    net_minor: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(one_of("kind", ENTRY_KINDS), name="kind_known"),
        CheckConstraint("currency = lower(currency) AND length(currency) = 3", name="currency_iso"),
        CheckConstraint("net_minor IS NULL OR net_minor = amount_minor - fee_minor", name="net"),
    )


class JournalPosting(Base):
    """One line of an entry: a signed amount (debit positive) on an account."""

    __tablename__ = "journal_postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"))

    __table_args__ = (
        CheckConstraint(one_of("account", ACCOUNTS), name="account_known"),
        CheckConstraint("currency = lower(currency) AND length(currency) = 3", name="currency_iso"),
    )


@dataclass(frozen=True)
class Line:
    """A posting before it is written: account, currency, signed minor units."""

    account: str
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class Movement:
    """A balance transaction's figures (or, before it is known, the charge's)."""

    currency: str
    amount_minor: int
    fee_minor: int | None = None
    net_minor: int | None = None


def check_balanced(lines: Sequence[Line]) -> None:
    """Raise LedgerError unless the lines sum to zero in every currency."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.account not in ACCOUNTS:
            raise LedgerError(f"unknown account {line.account!r}")
        if line.currency != line.currency.lower() or len(line.currency) != 3:
            raise LedgerError(f"currency {line.currency!r} is not a lower-case ISO code")
        totals[line.currency] += line.amount_minor
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"entry does not balance: {unbalanced}")



def post_entry(
    session: Session,
    key: str,
    kind: str,
    *,
    occurred_at: datetime,
    stripe_object_id: str,
    movement: Movement,
    lines: Sequence[Line],
    donor_id: int | None = None,
    stripe_charge_id: str | None = None,
    stripe_balance_transaction_id: str | None = None,
) -> bool:
    """Post an entry under `key` once. Returns True if this call posted it,
    False if the key was already there (a duplicate or a concurrent twin)."""
    if kind not in ENTRY_KINDS:
        raise LedgerError(f"unknown entry kind {kind!r}")
    if occurred_at.tzinfo is None:
        raise LedgerError("occurred_at must be timezone-aware")
    kept = [line for line in lines if line.amount_minor != 0]
    check_balanced(kept)
    if kind in ("donation", "membership_payment", "refund", "settlement"):
        ledger_totals.lock_object(session, stripe_object_id)
    statement = (
        insert_for(session)(JournalEntry)
        .values(
            key=key,
            kind=kind,
            occurred_at=occurred_at,
            created_at=utcnow(),
            donor_id=donor_id,
            stripe_object_id=stripe_object_id,
            stripe_charge_id=stripe_charge_id,
            stripe_balance_transaction_id=stripe_balance_transaction_id,
            currency=movement.currency,
            amount_minor=movement.amount_minor,
            fee_minor=movement.fee_minor,
            net_minor=movement.net_minor,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(JournalEntry.id)
    )
    entry_id = session.execute(statement).scalar()
    if entry_id is None:
        return False
    # The daily totals (derived data, app.ledger_totals) move with the entry,
    # in this transaction; a duplicate posted nothing and adds nothing.
    ledger_totals.add_entries(session, entry_id, entry_id)
    session.add_all(
        JournalPosting(
            entry_id=entry_id,
            account=line.account,
            currency=line.currency,
            amount_minor=line.amount_minor,
            donor_id=donor_id,
        )
        for line in kept
    )
    session.flush()
    return True


def entry_exists(session: Session, key: str) -> bool:
    return session.scalar(select(JournalEntry.id).where(JournalEntry.key == key)) is not None


# ---------------------------------------------------------------------------
# The postings of each kind of movement


def _fx_balance(lines: list[Line]) -> list[Line]:
    """Add fx_conversion lines so each currency balances: used only where the
    balance transaction's currency differs from the charge's."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    return lines + [Line("fx_conversion", cur, -total) for cur, total in totals.items() if total]


def recognise_payment(
    session: Session,
    *,
    charge_id: str,
    kind: str,
    currency: str,
    amount_minor: int,
    occurred_at: datetime,
    donor_id: int | None,
) -> bool:
    """Stage 1 of a payment: its gross, once per charge (Dr receivable, Cr revenue)."""
    if kind not in PAYMENT_KINDS:
        raise LedgerError(f"{kind!r} is not a payment kind")
    revenue = "revenue_donations" if kind == "donation" else "revenue_memberships"
    return post_entry(
        session,
        f"charge:{charge_id}",
        kind,
        occurred_at=occurred_at,
        stripe_object_id=charge_id,
        stripe_charge_id=charge_id,
        movement=Movement(currency, amount_minor),
        lines=[
            Line("stripe_receivable", currency, amount_minor),
            Line(revenue, currency, -amount_minor),
        ],
        donor_id=donor_id,
    )


def recognise_refund(
    session: Session,
    *,
    refund_id: str,
    charge_id: str | None,
    currency: str,
    amount_minor: int,
    occurred_at: datetime,
    donor_id: int | None,
) -> bool:
    """A refund, once per refund (Dr refunds, Cr receivable): `amount_minor` is
    the refund's positive amount; the movement is negative (money out)."""
    return post_entry(
        session,
        f"refund:{refund_id}",
        "refund",
        occurred_at=occurred_at,
        stripe_object_id=refund_id,
        stripe_charge_id=charge_id,
        movement=Movement(currency, -amount_minor),
        lines=[
            Line("refunds", currency, amount_minor),
            Line("stripe_receivable", currency, -amount_minor),
        ],
        donor_id=donor_id,
    )


@dataclass(frozen=True)
class BalanceTxn:
    """The figures of a Stripe balance transaction (txn_...)."""

    id: str
    type: str
    currency: str
    amount_minor: int
    fee_minor: int
    net_minor: int
    created_at: datetime
    source: str | None = None
    reporting_category: str | None = None


def settle(
    session: Session,
    txn: BalanceTxn,
    *,
    object_id: str,
    object_currency: str,
    object_amount_minor: int,
    charge_id: str | None,
    donor_id: int | None,
) -> bool:
    """Stage 2 of a payment or refund: the balance transaction's fee and net,
    once per balance transaction. `object_amount_minor` is the signed movement
    recognised in stage 1 (positive for a charge, negative for a refund)."""
    lines = [
        Line("stripe_balance", txn.currency, txn.net_minor),
        Line("fees_processing", txn.currency, txn.fee_minor),
        Line("stripe_receivable", object_currency, -object_amount_minor),
    ]
    if txn.currency != object_currency:
        lines = _fx_balance(lines)
    elif txn.amount_minor != object_amount_minor:
        raise LedgerError(
            f"balance transaction {txn.id} moves {txn.amount_minor}, "
            f"but {object_id} is {object_amount_minor}"
        )
    return post_entry(
        session,
        f"balance_transaction:{txn.id}",
        "settlement",
        occurred_at=txn.created_at,
        stripe_object_id=object_id,
        stripe_charge_id=charge_id,
        stripe_balance_transaction_id=txn.id,
        movement=Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor),
        lines=lines,
        donor_id=donor_id,
    )


# Standalone movements: the counter-account takes -amount, a fee account the
# fee, the Stripe balance the net.
_STANDALONE = {
    "refund_failure": ("refunds", "fees_processing"),
    "dispute": ("chargebacks", "fees_dispute"),
    "dispute_reversal": ("chargebacks", "fees_dispute"),
    "payout": ("bank", "fees_stripe"),
    "payout_failure": ("bank", "fees_stripe"),
    "stripe_fee": ("fees_stripe", "fees_stripe"),
    "adjustment": ("adjustments", "fees_stripe"),
}


def post_movement(
    session: Session,
    txn: BalanceTxn,
    kind: str,
    *,
    object_id: str,
    charge_id: str | None = None,
    donor_id: int | None = None,
) -> bool:
    """A movement that is its own balance transaction (refund failure, dispute
    withdrawal or reinstatement, payout, payout failure, Stripe fee,
    adjustment), once per balance transaction."""
    if kind not in _STANDALONE:
        raise LedgerError(f"{kind!r} is not a standalone movement")
    counter, fee_account = _STANDALONE[kind]
    return post_entry(
        session,
        f"balance_transaction:{txn.id}",
        kind,
        occurred_at=txn.created_at,
        stripe_object_id=object_id,
        stripe_charge_id=charge_id,
        stripe_balance_transaction_id=txn.id,
        movement=Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor),
        lines=[
            Line("stripe_balance", txn.currency, txn.net_minor),
            Line(fee_account, txn.currency, txn.fee_minor),
            Line(counter, txn.currency, -txn.amount_minor),
        ],
        donor_id=donor_id,
    )


# Balance transaction types (Stripe's `type`) that are not payments, refunds,
# disputes or payouts, and the kind of movement they are.
_OTHER_TYPES = {
    "stripe_fee": "stripe_fee",
    "tax_fee": "stripe_fee",
    "application_fee": "stripe_fee",
    "payout": "payout",
    "payout_failure": "payout_failure",
    "payout_cancel": "payout_failure",
}
# Types whose movement is posted from their own object's events.
HANDLED_BY_OBJECT = frozenset(
    [
        "charge",
        "payment",
        "refund",
        "payment_refund",
        "refund_failure",
        "payment_failure_refund",
        "adjustment_dispute",
    ]
)


def post_other_balance_transaction(session: Session, txn: BalanceTxn) -> bool:
    """A balance transaction that no object event posts (Stripe fees, payouts
    seen in a payout's listing, anything else): for listings of a payout's
    transactions and for `stripe sync`. Charges, refunds and disputes are
    skipped here: their own events post them with their donor and attribution."""
    if txn.type in HANDLED_BY_OBJECT or txn.reporting_category in ("dispute", "dispute_reversal"):
        return False
    kind = _OTHER_TYPES.get(txn.type, "adjustment")
    return post_movement(session, txn, kind, object_id=txn.source or txn.id)


# ---------------------------------------------------------------------------
# Reports


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
    the finance views (app.reports) filter, page and total it, so every
    report counts exactly the rows of the export. `currency`, `amount_minor`,
    `fee_minor` and `net_minor` are the settlement's once it is known.
    `records=False` leaves out the joins to payments, memberships, checkouts
    and donors (one row each at most, so the same rows): for totals that need
    only the money, without their cost."""
    entry = aliased(JournalEntry, name="e")
    settled = aliased(JournalEntry, name="s")
    is_settled = settled.id.is_not(None)
    columns: list[Any] = [
        entry.occurred_at.label("occurred_at"),
        entry.key.label("key"),
        entry.kind.label("kind"),
        entry.stripe_object_id.label("stripe_id"),
        entry.stripe_charge_id.label("stripe_charge_id"),
        entry.donor_id.label("entry_donor_id"),
        entry.currency.label("donor_currency"),
        entry.amount_minor.label("donor_amount_minor"),
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


@dataclass
class _Totals:
    gross: int = 0
    fees: int = 0
    refunds: int = 0
    disputes: int = 0
    other: int = 0
    net: int = 0
    payouts: int = 0
    payments: int = 0


def _summary_totals(
    session: Session, since: datetime | None, until: datetime | None
) -> tuple[dict[str, _Totals], int]:
    totals: dict[str, _Totals] = defaultdict(_Totals)
    donors: set[str] = set()
    for row in iter_rows(session, since, until):
        t = totals[row.currency]
        fee = row.fee_minor or 0
        if row.kind in PAYMENT_KINDS:
            t.gross += row.amount_minor
            t.payments += 1
            if row.donor_email:
                donors.add(row.donor_email)
        elif row.kind in ("refund", "refund_failure"):
            t.refunds += row.amount_minor
        elif row.kind in ("dispute", "dispute_reversal"):
            t.disputes += row.amount_minor
        elif row.kind == "adjustment":
            t.other += row.amount_minor
        if row.kind in ("payout", "payout_failure"):
            t.payouts += row.amount_minor
        else:
            t.fees += fee
        if row.kind == "stripe_fee":
            t.fees -= row.amount_minor
    for t in totals.values():
        t.net = t.gross - t.fees + t.refunds + t.disputes + t.other
    return dict(totals), len(donors)


def count_active_memberships(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(Membership.id)).where(Membership.status.in_(("active", "past_due")))
        )
        or 0
    )


def summary(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Totals per currency over the CSV's rows (CONTRACT.md "Ledger summary JSON")."""
    totals, donors = _summary_totals(session, since, until)
    currencies = {
        currency: {
            "gross": format_plain(t.gross, currency),
            "fees": format_plain(t.fees, currency),
            "refunds": format_plain(t.refunds, currency),
            "disputes": format_plain(t.disputes, currency),
            "other": format_plain(t.other, currency),
            "net": format_plain(t.net, currency),
            "payouts": format_plain(t.payouts, currency),
            "payments": t.payments,
        }
        for currency, t in sorted(totals.items())
    }
    return {
        "currencies": currencies,
        "donors": donors,
        "active_memberships": count_active_memberships(session),
    }


def verify(session: Session) -> list[str]:
    """Everything wrong with the ledger, one line each; empty when it is sound."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(JournalEntry.key, JournalPosting.currency, func.sum(JournalPosting.amount_minor))
        .join(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .group_by(JournalEntry.key, JournalPosting.currency)
        .having(func.sum(JournalPosting.amount_minor) != 0)
        .order_by(JournalEntry.key)
    ).all()
    for key, currency, total in unbalanced:
        problems.append(f"entry {key} does not balance in {currency}: off by {total}")

    orphans = session.scalar(
        select(func.count(JournalPosting.id))
        .outerjoin(JournalEntry, JournalEntry.id == JournalPosting.entry_id)
        .where(JournalEntry.id.is_(None))
    )
    if orphans:
        problems.append(f"{orphans} postings belong to no entry")

    empty = session.scalars(
        select(JournalEntry.key)
        .outerjoin(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .where(JournalPosting.id.is_(None), JournalEntry.amount_minor != 0)
        .order_by(JournalEntry.key)
    ).all()
    problems.extend(f"entry {key} has no postings" for key in empty)

    # A settled charge or refund leaves nothing in the receivable.
    settled_objects = select(JournalEntry.stripe_object_id).where(JournalEntry.kind == "settlement")
    recognised_objects = select(JournalEntry.stripe_object_id).where(
        JournalEntry.kind.in_(("donation", "membership_payment", "refund"))
    )
    open_receivables = session.execute(
        select(
            JournalEntry.stripe_object_id,
            JournalPosting.currency,
            func.sum(JournalPosting.amount_minor),
        )
        .join(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .where(
            JournalPosting.account == "stripe_receivable",
            JournalEntry.stripe_object_id.in_(settled_objects),
            JournalEntry.stripe_object_id.in_(recognised_objects),
        )
        .group_by(JournalEntry.stripe_object_id, JournalPosting.currency)
        .having(func.sum(JournalPosting.amount_minor) != 0)
        .order_by(JournalEntry.stripe_object_id)
    ).all()
    for object_id, currency, total in open_receivables:
        problems.append(f"{object_id} is settled but {total} {currency} stays receivable")

    # The summary's figures are the postings' figures.
    balance = dict(
        session.execute(
            select(JournalPosting.currency, func.sum(JournalPosting.amount_minor))
            .where(JournalPosting.account == "stripe_balance")
            .group_by(JournalPosting.currency)
        ).all()
    )
    bank = dict(
        session.execute(
            select(JournalPosting.currency, func.sum(JournalPosting.amount_minor))
            .where(JournalPosting.account == "bank")
            .group_by(JournalPosting.currency)
        ).all()
    )
    net_of_rows: dict[str, int] = defaultdict(int)
    payouts_of_rows: dict[str, int] = defaultdict(int)
    for row in iter_rows(session):
        net_of_rows[row.currency] += row.net_minor or 0
        if row.kind in ("payout", "payout_failure"):
            payouts_of_rows[row.currency] += row.amount_minor
    for currency in sorted(set(balance) | set(net_of_rows)):
        posted = int(balance.get(currency) or 0)
        if posted != net_of_rows.get(currency, 0):
            problems.append(
                f"stripe_balance in {currency} is {posted}, the export's net adds up to "
                f"{net_of_rows.get(currency, 0)}"
            )
    totals, _ = _summary_totals(session, None, None)
    for currency in sorted(set(bank) | set(payouts_of_rows)):
        posted = int(bank.get(currency) or 0)
        summarised = totals[currency].payouts if currency in totals else 0
        if posted != -summarised:
            problems.append(
                f"bank in {currency} is {posted}, the summary's payouts are {summarised}"
            )
    # The daily totals (derived) equal the journal's rows.
    problems.extend(ledger_totals.differences(session))
    return problems


def entries_by_key(
    session: Session,
) -> dict[str, tuple[str, str, tuple[tuple[str, str, int], ...]]]:
    """The whole journal as {key: (kind, object id, sorted postings)}, for
    comparing two ledgers (tests, replays)."""
    result: dict[str, tuple[str, str, tuple[tuple[str, str, int], ...]]] = {}
    entries = session.execute(
        select(JournalEntry.id, JournalEntry.key, JournalEntry.kind, JournalEntry.stripe_object_id)
    ).all()
    postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for entry_id, account, currency, amount in session.execute(
        select(
            JournalPosting.entry_id,
            JournalPosting.account,
            JournalPosting.currency,
            JournalPosting.amount_minor,
        )
    ):
        postings[entry_id].append((account, currency, amount))
    for entry_id, key, kind, object_id in entries:
        result[key] = (kind, object_id, tuple(sorted(postings[entry_id])))
    return result


# The daily totals need JournalEntry, defined above; post_entry and verify use them.
from app import ledger_totals  # noqa: E402

__all__ = [
    "ACCOUNTS",
    "CSV_COLUMNS",
    "BalanceTxn",
    "JournalEntry",
    "JournalPosting",
    "LedgerError",
    "Line",
    "Movement",
    "entries_by_key",
    "export_rows",
    "post_entry",
    "post_movement",
    "post_other_balance_transaction",
    "recognise_payment",
    "recognise_refund",
    "row_from",
    "rows_query",
    "settle",
    "summary",
    "verify",
]
