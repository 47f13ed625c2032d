"""sandbox objects (the offline payments sandbox's store)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 03:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table: no locks on existing ones.
    op.create_table(
        "sandbox_objects",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("json", sa.Text(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_objects")),
    )
    with op.batch_alter_table("sandbox_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_objects_type"), ["type"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sandbox_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_objects_type"))
    op.drop_table("sandbox_objects")
