"""payments.amount_refunded_minor and amount_refunded_at: what Stripe says was
refunded of a charge (as its newest event had it), for `ledger verify` to
compare with the refunds posted. Nullable columns, added without a default:
no table rewrite, no long lock.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("amount_refunded_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("amount_refunded_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("amount_refunded_at")
        batch.drop_column("amount_refunded_minor")
