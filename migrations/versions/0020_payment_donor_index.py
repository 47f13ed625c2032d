"""payment entries by donor and time: a partial index of journal_entries
(donor_id, occurred_at) over the payment kinds, so a donor's first payment
(the dashboard's new donors) is read from the index alone

Revision ID: 0020
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("kind IN ('donation', 'membership_payment')")


def upgrade() -> None:
    op.create_index(
        "ix_journal_entries_payment_donor_at",
        "journal_entries",
        ["donor_id", "occurred_at"],
        unique=False,
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_journal_entries_payment_donor_at", table_name="journal_entries")
