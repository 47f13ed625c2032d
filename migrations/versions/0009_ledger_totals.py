"""ledger daily totals: the ledger CSV's money summed per UTC day of the
movement, currency and kind (derived data kept with each posting; the journal
stays the truth), backfilled here from the journal

Revision ID: 0009
Revises: 0006 (journal_entries and the finance indexes)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rows of rows_query (each movement joined to its settlements), summed.
BACKFILL = """
INSERT INTO ledger_daily_totals
    (day_utc, currency, kind, amount_minor, fee_minor, net_minor, row_count)
SELECT {day}, COALESCE(s.currency, m.currency), m.kind,
       SUM(CASE WHEN s.id IS NOT NULL THEN s.amount_minor ELSE m.amount_minor END),
       SUM(COALESCE(CASE WHEN s.id IS NOT NULL THEN s.fee_minor ELSE m.fee_minor END, 0)),
       SUM(COALESCE(CASE WHEN s.id IS NOT NULL THEN s.net_minor ELSE m.net_minor END, 0)),
       COUNT(*)
FROM journal_entries AS m
LEFT OUTER JOIN journal_entries AS s
    ON s.kind = 'settlement' AND s.stripe_object_id = m.stripe_object_id
   AND m.kind IN ('donation', 'membership_payment', 'refund')
WHERE m.kind != 'settlement'
GROUP BY 1, 2, 3
"""


def upgrade() -> None:
    op.create_table(
        "ledger_daily_totals",
        sa.Column("day_utc", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day_utc", "currency", "kind", name=op.f("pk_ledger_daily_totals")),
    )
    if op.get_bind().dialect.name == "postgresql":
        day = "CAST(timezone('UTC', m.occurred_at) AS DATE)"
    else:
        day = "date(m.occurred_at)"
    op.execute(BACKFILL.format(day=day))


def downgrade() -> None:
    op.drop_table("ledger_daily_totals")
