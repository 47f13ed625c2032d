"""donors and checkouts

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 02:44:02.040330
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('donors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_donors_email_normalised')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_donors')),
    sa.UniqueConstraint('email', name=op.f('uq_donors_email'))
    )
    op.create_table('checkouts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('donor_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('frequency', sa.String(length=8), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('fee_cover_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('cover_fees', sa.Boolean(), nullable=False),
    sa.Column('campaign', sa.String(length=100), nullable=True),
    sa.Column('utm_source', sa.String(length=100), nullable=True),
    sa.Column('utm_medium', sa.String(length=100), nullable=True),
    sa.Column('utm_content', sa.String(length=100), nullable=True),
    sa.Column('utm_term', sa.String(length=100), nullable=True),
    sa.Column('dedication_kind', sa.String(length=8), nullable=True),
    sa.Column('dedication_name', sa.String(length=200), nullable=True),
    sa.Column('anonymous', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('stripe_checkout_session_id', sa.String(length=255), nullable=False),
    sa.Column('stripe_checkout_url', sa.Text(), nullable=True),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=True),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("dedication_kind IS NULL OR dedication_kind IN ('honour', 'memory')", name=op.f('ck_checkouts_dedication_kind_known')),
    sa.CheckConstraint("frequency IN ('once', 'month', 'year')", name=op.f('ck_checkouts_frequency_known')),
    sa.CheckConstraint("status IN ('open', 'complete', 'expired')", name=op.f('ck_checkouts_status_known')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_checkouts_amount_positive')),
    sa.CheckConstraint('currency = lower(currency) AND length(currency) = 3', name=op.f('ck_checkouts_currency_iso')),
    sa.CheckConstraint('fee_cover_minor >= 0', name=op.f('ck_checkouts_fee_cover_not_negative')),
    sa.CheckConstraint('total_minor = amount_minor + fee_cover_minor', name=op.f('ck_checkouts_total_adds_up')),
    sa.ForeignKeyConstraint(['donor_id'], ['donors.id'], name=op.f('fk_checkouts_donor_id_donors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkouts')),
    sa.UniqueConstraint('stripe_checkout_session_id', name=op.f('uq_checkouts_stripe_checkout_session_id'))
    )
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.create_index('ix_checkouts_campaign_created_at', ['campaign', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkouts_donor_id'), ['donor_id'], unique=False)

    op.create_table('stripe_customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=False),
    sa.Column('donor_id', sa.Integer(), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['donor_id'], ['donors.id'], name=op.f('fk_stripe_customers_donor_id_donors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_customers')),
    sa.UniqueConstraint('stripe_customer_id', name=op.f('uq_stripe_customers_stripe_customer_id'))
    )
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_customers_donor_id'), ['donor_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_customers_donor_id'))

    op.drop_table('stripe_customers')
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkouts_donor_id'))
        batch_op.drop_index('ix_checkouts_campaign_created_at')

    op.drop_table('checkouts')
    op.drop_table('donors')
