"""webhook inbox: stored Stripe events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0003'
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table: no locks on existing ones.
    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=255), nullable=False),
    sa.Column('api_version', sa.String(length=64), nullable=True),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('stripe_created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stripe_object_id', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('received_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('processed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'processed', 'failed', 'dead', 'skipped')", name=op.f('ck_stripe_events_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_stripe_events_attempts_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    sa.UniqueConstraint('stripe_event_id', name=op.f('uq_stripe_events_stripe_event_id'))
    )
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_events_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_stripe_events_stripe_object_id', ['stripe_object_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_events_stripe_object_id')
        batch_op.drop_index('ix_stripe_events_status_next_attempt_at')

    op.drop_table('stripe_events')
