"""The outbox table: one row per job key (`receipt:ch_...`), its kind, a small
JSON payload of ids (never an address or a message body), and where it is
(pending, failed, done, dead). Definitions only: no queries, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, one_of

JOB_STATUSES = ("pending", "failed", "done", "dead")
DUE_STATUSES = ("pending", "failed")


class OutboxJob(Base):
    """Work to do once per key, queued in the transaction of its cause."""

    __tablename__ = "outbox_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # JSON of ids
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(255))  # e.g. why a job did nothing
    created_at: Mapped[datetime] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint(one_of("status", JOB_STATUSES), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The runner's claim: due statuses, oldest next_attempt_at first.
        Index("ix_outbox_jobs_status_next_attempt_at", "status", "next_attempt_at"),
    )
