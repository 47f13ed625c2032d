"""Where a sync stands: one cursor per window and Stripe list (so a run that
was stopped picks up after the last page it committed), and each finished
run with its report (the dashboard and /ledger/reconciliation read the last).
Definitions only: no Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base


class SyncCursor(Base):
    """How far a window's sync has paged through one Stripe list."""

    __tablename__ = "sync_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window: Mapped[str] = mapped_column(String(64))  # "SINCE..UNTIL" as UTC unix seconds
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
