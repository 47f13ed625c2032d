"""appeals: admins' overrides of the configured appeals, counters per appeal,
variant, day and event (no rows per view), and the nudge a checkout came by

Revision ID: 0019
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0019"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "appeal_overrides",
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_appeal_overrides")),
    )
    op.create_table(
        "appeal_counters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal", sa.String(length=40), nullable=False),
        sa.Column("variant", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "event IN ('seen', 'click', 'nudge_shown', 'nudge_switch', 'invite_shown', 'invite_click')",
            name=op.f("ck_appeal_counters_event_known"),
        ),
        sa.CheckConstraint("count >= 0", name=op.f("ck_appeal_counters_count_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_counters")),
        sa.UniqueConstraint("appeal", "variant", "day", "event", name="uq_appeal_counters_key"),
    )
    # A nullable column without a default: no table rewrite on PostgreSQL.
    op.add_column("checkouts", sa.Column("nudge", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkouts") as batch:
        batch.drop_column("nudge")
    op.drop_table("appeal_counters")
    op.drop_table("appeal_overrides")
