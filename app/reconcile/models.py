"""Where a sync stands: one cursor per window and Stripe list (so a run that
was stopped picks up after the last page it committed), each finished run
with its report (the dashboard and /ledger/reconciliation read the last), and
which balance transactions an automatic payout paid out (the payout page).
Definitions only: no Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base
from app.ledger.models import JournalEntry


class SyncCursor(Base):
    """How far a window's sync has paged through one Stripe list."""

    __tablename__ = "sync_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "SINCE..UNTIL" as UTC unix seconds, "scheduled:SINCE..UNTIL" for the worker's runs
    window: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(64))
    starting_after: Mapped[str | None] = mapped_column(String(255))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("window", "resource", name="uq_sync_cursors_window_resource"),
    )


class SyncRun(Base):
    """One finished `stripe sync` (or report-only run) and its report (JSON)."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    window_since: Mapped[datetime | None] = mapped_column()
    window_until: Mapped[datetime | None] = mapped_column()
    report_only: Mapped[bool] = mapped_column(Boolean, default=False)
    posted: Mapped[int] = mapped_column(Integer, default=0)
    differences: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[str] = mapped_column(Text)


class PayoutTransaction(Base):
    """A balance transaction inside an automatic payout, as Stripe lists it
    (`GET /v1/balance_transactions?payout=po_...`), the payout's own left out."""

    __tablename__ = "payout_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_balance_transaction_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "stripe_payout_id",
            "stripe_balance_transaction_id",
            name="uq_payout_transactions_payout_transaction",
        ),
    )


class SyncRequest(Base):
    """A run asked for on /ledger/reconciliation, for a worker to carry out."""

    __tablename__ = "sync_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[int | None] = mapped_column(Integer)  # staff id
    window_since: Mapped[datetime | None] = mapped_column()
    window_until: Mapped[datetime | None] = mapped_column()
    report_only: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column()
    sync_run_id: Mapped[int | None] = mapped_column(Integer)


# The report matches every Stripe balance transaction to the ledger by its id.
Index(
    "ix_journal_entries_stripe_balance_transaction_id",
    JournalEntry.stripe_balance_transaction_id,
)
