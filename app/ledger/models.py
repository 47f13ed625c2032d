"""The journal's tables (journal_entries, journal_postings), its accounts and
kinds of entry, and LedgerError: the vocabulary every part of the ledger shares.
Definitions only: no posting, no queries, no Flask, no `stripe`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base, one_of

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
_PAYMENT_KINDS_SQL = "kind IN (" + ", ".join(f"'{kind}'" for kind in PAYMENT_KINDS) + ")"


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
        # A donor's payments in time order, from the index alone (first payments).
        Index(
            "ix_journal_entries_payment_donor_at",
            "donor_id",
            "occurred_at",
            postgresql_where=text(_PAYMENT_KINDS_SQL),
            sqlite_where=text(_PAYMENT_KINDS_SQL),
        ),
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
