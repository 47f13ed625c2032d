"""The entries of each kind of movement: a builder per kind (`payment_entry`,
`refund_entry`, `settlement_entry`, `movement_entry`) that makes its key and
balanced lines, and the posting function of each (`recognise_payment`,
`recognise_refund`, `settle`, `post_movement`, `post_other_balance_transaction`)
that posts it once through `app.ledger.journal.post`. The builders are also
what the seed's bulk path writes. No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.ledger.journal import Entry, Line, Movement, post
from app.ledger.models import PAYMENT_KINDS, LedgerError


def fx_balanced(lines: list[Line]) -> list[Line]:
    """Add fx_conversion lines so each currency balances: used only where the
    balance transaction's currency differs from the charge's."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    return lines + [Line("fx_conversion", cur, -total) for cur, total in totals.items() if total]


def payment_entry(
    *,
    charge_id: str,
    kind: str,
    currency: str,
    amount_minor: int,
    occurred_at: datetime,
    donor_id: int | None,
) -> Entry:
    """Stage 1 of a payment: its gross, once per charge (Dr receivable, Cr revenue)."""
    if kind not in PAYMENT_KINDS:
        raise LedgerError(f"{kind!r} is not a payment kind")
    revenue = "revenue_donations" if kind == "donation" else "revenue_memberships"
    return Entry(
        f"charge:{charge_id}",
        kind,
        occurred_at,
        charge_id,
        Movement(currency, amount_minor),
        (
            Line("stripe_receivable", currency, amount_minor),
            Line(revenue, currency, -amount_minor),
        ),
        donor_id,
        stripe_charge_id=charge_id,
    )


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
    """Post a payment's `payment_entry` once."""
    entry = payment_entry(
        charge_id=charge_id,
        kind=kind,
        currency=currency,
        amount_minor=amount_minor,
        occurred_at=occurred_at,
        donor_id=donor_id,
    )
    return post(session, entry)


def refund_entry(
    *,
    refund_id: str,
    charge_id: str | None,
    currency: str,
    amount_minor: int,
    occurred_at: datetime,
    donor_id: int | None,
) -> Entry:
    """A refund, once per refund (Dr refunds, Cr receivable): `amount_minor` is
    the refund's positive amount; the movement is negative (money out)."""
    return Entry(
        f"refund:{refund_id}",
        "refund",
        occurred_at,
        refund_id,
        Movement(currency, -amount_minor),
        (
            Line("refunds", currency, amount_minor),
            Line("stripe_receivable", currency, -amount_minor),
        ),
        donor_id,
        stripe_charge_id=charge_id,
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
    """Post a refund's `refund_entry` once."""
    entry = refund_entry(
        refund_id=refund_id,
        charge_id=charge_id,
        currency=currency,
        amount_minor=amount_minor,
        occurred_at=occurred_at,
        donor_id=donor_id,
    )
    return post(session, entry)


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


def settlement_entry(
    txn: BalanceTxn,
    *,
    object_id: str,
    object_currency: str,
    object_amount_minor: int,
    charge_id: str | None,
    donor_id: int | None,
) -> Entry:
    """Stage 2 of a payment or refund: the balance transaction's fee and net,
    once per balance transaction. `object_amount_minor` is the signed movement
    recognised in stage 1 (positive for a charge, negative for a refund)."""
    lines = [
        Line("stripe_balance", txn.currency, txn.net_minor),
        Line("fees_processing", txn.currency, txn.fee_minor),
        Line("stripe_receivable", object_currency, -object_amount_minor),
    ]
    if txn.currency != object_currency:
        lines = fx_balanced(lines)
    elif txn.amount_minor != object_amount_minor:
        raise LedgerError(
            f"balance transaction {txn.id} moves {txn.amount_minor}, "
            f"but {object_id} is {object_amount_minor}"
        )
    return Entry(
        f"balance_transaction:{txn.id}",
        "settlement",
        txn.created_at,
        object_id,
        Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor),
        tuple(lines),
        donor_id,
        charge_id,
        txn.id,
    )


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
    """Post a settlement's `settlement_entry` once."""
    entry = settlement_entry(
        txn,
        object_id=object_id,
        object_currency=object_currency,
        object_amount_minor=object_amount_minor,
        charge_id=charge_id,
        donor_id=donor_id,
    )
    return post(session, entry)


# Standalone movements: the counter-account takes -amount, a fee account the
# fee, the Stripe balance the net.
STANDALONE_ACCOUNTS = {
    "refund_failure": ("refunds", "fees_processing"),
    "dispute": ("chargebacks", "fees_dispute"),
    "dispute_reversal": ("chargebacks", "fees_dispute"),
    "payout": ("bank", "fees_stripe"),
    "payout_failure": ("bank", "fees_stripe"),
    "stripe_fee": ("fees_stripe", "fees_stripe"),
    "adjustment": ("adjustments", "fees_stripe"),
}


def movement_entry(
    txn: BalanceTxn,
    kind: str,
    *,
    object_id: str,
    charge_id: str | None = None,
    donor_id: int | None = None,
) -> Entry:
    """A movement that is its own balance transaction (refund failure, dispute
    withdrawal or reinstatement, payout, payout failure, Stripe fee,
    adjustment), once per balance transaction."""
    if kind not in STANDALONE_ACCOUNTS:
        raise LedgerError(f"{kind!r} is not a standalone movement")
    counter, fee_account = STANDALONE_ACCOUNTS[kind]
    return Entry(
        f"balance_transaction:{txn.id}",
        kind,
        txn.created_at,
        object_id,
        Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor),
        (
            Line("stripe_balance", txn.currency, txn.net_minor),
            Line(fee_account, txn.currency, txn.fee_minor),
            Line(counter, txn.currency, -txn.amount_minor),
        ),
        donor_id,
        charge_id,
        txn.id,
    )


def post_movement(
    session: Session,
    txn: BalanceTxn,
    kind: str,
    *,
    object_id: str,
    charge_id: str | None = None,
    donor_id: int | None = None,
) -> bool:
    """Post a standalone movement's `movement_entry` once."""
    return post(
        session,
        movement_entry(txn, kind, object_id=object_id, charge_id=charge_id, donor_id=donor_id),
    )


# Balance transaction types (Stripe's `type`) that are not payments, refunds,
# disputes or payouts, and the kind of movement they are. Any other type
# whose `reporting_category` is `fee` is a Stripe fee too (FEE_CATEGORY).
OTHER_TYPES = {
    "stripe_fee": "stripe_fee",
    "stripe_fx_fee": "stripe_fee",
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
    return post_movement(session, txn, other_kind(txn), object_id=txn.source or txn.id)


FEE_CATEGORY = "fee"


def other_kind(txn: BalanceTxn) -> str:
    """The kind of movement of a balance transaction no object event posts:
    by its type, else a fee by its reporting category, else an adjustment."""
    kind = OTHER_TYPES.get(txn.type)
    if kind is not None:
        return kind
    return "stripe_fee" if txn.reporting_category == FEE_CATEGORY else "adjustment"
