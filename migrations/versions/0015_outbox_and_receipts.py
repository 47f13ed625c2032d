"""outbox jobs: slow or external work (receipts, notices, statements) queued
in the transaction of the ledger change that causes it, once per key

Revision ID: 0015
Revises: 0016 (chained after main's latest; the task gave 0009)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0015"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("done_at", app.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'failed', 'done', 'dead')",
            name=op.f("ck_outbox_jobs_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_jobs_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_jobs")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_jobs_key")),
    )
    op.create_index(
        "ix_outbox_jobs_status_next_attempt_at",
        "outbox_jobs",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_jobs_status_next_attempt_at", table_name="outbox_jobs")
    op.drop_table("outbox_jobs")
