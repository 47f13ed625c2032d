"""finance views: indexes for the journal's keyset pages and month ranges,
new donors per month, the events page, and donor search (trigram indexes on
PostgreSQL)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_journal_entries_occurred_at_key", "journal_entries", ["occurred_at", "key"])
    # A movement's settlement, looked up by object id among settlements only
    # (covering: the totals read its figures from the index).
    op.create_index(
        "ix_journal_entries_settlement_object",
        "journal_entries",
        ["stripe_object_id"],
        postgresql_where=sa.text("kind = 'settlement'"),
        postgresql_include=["currency", "amount_minor", "fee_minor", "net_minor"],
        sqlite_where=sa.text("kind = 'settlement'"),
    )
    op.create_index("ix_donors_created_at", "donors", ["created_at"])
    op.create_index("ix_stripe_events_received_at", "stripe_events", ["received_at"])
    # Donor search: email prefix and name substring (LIKE/ILIKE). On
    # PostgreSQL trigram GIN indexes serve both; SQLite gets plain indexes.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index(
        "ix_donors_email_trgm",
        "donors",
        ["email"],
        postgresql_using="gin",
        postgresql_ops={"email": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_donors_name_trgm",
        "donors",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_donors_name_trgm", table_name="donors")
    op.drop_index("ix_donors_email_trgm", table_name="donors")
    op.drop_index("ix_stripe_events_received_at", table_name="stripe_events")
    op.drop_index("ix_donors_created_at", table_name="donors")
    op.drop_index("ix_journal_entries_settlement_object", table_name="journal_entries")
    op.drop_index("ix_journal_entries_occurred_at_key", table_name="journal_entries")
