"""stripe events: an affinity, a number that events about the same customer
or payment share (webhooks.inbox.affinity_of), so that the lanes of a worker
(worker_lanes) each claim their own share of the inbox and two lanes seldom
apply events about one donor at once: they deadlocked on each other's rows
when their batches split a payment's events (PostgreSQL then aborts one
after deadlock_timeout, a second's stall). Events stored before have 0: the
first lane's.

Revision ID: 0023
Revises: 0022 (the head of main)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stripe_events") as batch:
        batch.add_column(
            sa.Column("affinity", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("stripe_events") as batch:
        batch.drop_column("affinity")
