"""stripe sync: cursors per window and list, finished runs with their report,
the balance transactions inside each automatic payout, and runs asked for from the
finance area; journal entries indexed by balance transaction

Revision ID: 0016
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0016"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("window", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("starting_after", sa.String(length=255), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_cursors")),
        sa.UniqueConstraint("window", "resource", name="uq_sync_cursors_window_resource"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("window_since", app.db.UTCDateTime(), nullable=True),
        sa.Column("window_until", app.db.UTCDateTime(), nullable=True),
        sa.Column("report_only", sa.Boolean(), nullable=False),
        sa.Column("posted", sa.Integer(), nullable=False),
        sa.Column("differences", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_table(
        "payout_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_transactions")),
        sa.UniqueConstraint(
            "stripe_payout_id",
            "stripe_balance_transaction_id",
            name="uq_payout_transactions_payout_transaction",
        ),
    )
    op.create_index(
        op.f("ix_payout_transactions_stripe_payout_id"),
        "payout_transactions",
        ["stripe_payout_id"],
    )
    op.create_table(
        "sync_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requested_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("window_since", app.db.UTCDateTime(), nullable=True),
        sa.Column("window_until", app.db.UTCDateTime(), nullable=True),
        sa.Column("report_only", sa.Boolean(), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_requests")),
    )
    op.create_index(
        "ix_journal_entries_stripe_balance_transaction_id",
        "journal_entries",
        ["stripe_balance_transaction_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_journal_entries_stripe_balance_transaction_id", "journal_entries")
    op.drop_table("sync_requests")
    op.drop_index(op.f("ix_payout_transactions_stripe_payout_id"), "payout_transactions")
    op.drop_table("payout_transactions")
    op.drop_table("sync_runs")
    op.drop_table("sync_cursors")
