"""ledger daily changes: each posting's change to the daily totals, appended
(no row updated, so concurrent postings never wait on one day's totals) and
folded into ledger_daily_totals by the worker's roll-up

Revision ID: 0017
Revises: 0019 (the head of main)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_daily_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("day_utc", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_daily_changes")),
    )


def downgrade() -> None:
    # Fold what is still open into the totals first: nothing is lost.
    op.execute(
        "INSERT INTO ledger_daily_totals "
        "(day_utc, currency, kind, amount_minor, fee_minor, net_minor, row_count) "
        "SELECT day_utc, currency, kind, SUM(amount_minor), SUM(fee_minor), "
        "SUM(net_minor), SUM(row_count) FROM ledger_daily_changes WHERE true "
        "GROUP BY day_utc, currency, kind "
        "ON CONFLICT (day_utc, currency, kind) DO UPDATE SET "
        "amount_minor = ledger_daily_totals.amount_minor + excluded.amount_minor, "
        "fee_minor = ledger_daily_totals.fee_minor + excluded.fee_minor, "
        "net_minor = ledger_daily_totals.net_minor + excluded.net_minor, "
        "row_count = ledger_daily_totals.row_count + excluded.row_count"
    )
    op.drop_table("ledger_daily_changes")
