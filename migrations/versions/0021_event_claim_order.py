"""stripe events: a partial index of the due events in Stripe's order, so the
worker's claim walks its batch's rows oldest first instead of sorting the
whole backlog (137 ms per claim at 50,000 due events, measured)

Revision ID: 0021
Revises: 0020 (the head of main)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = "status IN ('pending', 'failed')"


def upgrade() -> None:
    op.create_index(
        "ix_stripe_events_due_order",
        "stripe_events",
        ["stripe_created_at", "stripe_event_id"],
        postgresql_where=sa.text(DUE),
        sqlite_where=sa.text(DUE),
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_events_due_order", table_name="stripe_events")
