"""manage my membership: magic links (token hashes only) and the membership
actions donors ask for, recorded before each Stripe call

Revision ID: 0018
Revises: 0017 (main's head at the last rebase)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "manage_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("donor_id", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("requested_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("issued_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("used_at", app.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["donor_id"], ["donors.id"], name=op.f("fk_manage_links_donor_id_donors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manage_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_manage_links_token_hash")),
    )
    op.create_index(op.f("ix_manage_links_donor_id"), "manage_links", ["donor_id"], unique=False)
    op.create_table(
        "membership_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("donor_id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("form_token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("stripe_params", sa.Text(), nullable=True),
        sa.Column("stripe_error", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result_url", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("claimed_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("sent_at", app.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('cancel', 'resume', 'change', 'update_card')",
            name=op.f("ck_membership_actions_kind_known"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed')",
            name=op.f("ck_membership_actions_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["donor_id"], ["donors.id"], name=op.f("fk_membership_actions_donor_id_donors")
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["memberships.id"],
            name=op.f("fk_membership_actions_membership_id_memberships"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_actions")),
        sa.UniqueConstraint("form_token", name=op.f("uq_membership_actions_form_token")),
    )
    op.create_index(
        op.f("ix_membership_actions_donor_id"), "membership_actions", ["donor_id"], unique=False
    )
    op.create_index(
        op.f("ix_membership_actions_membership_id"),
        "membership_actions",
        ["membership_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_membership_actions_membership_id"), table_name="membership_actions")
    op.drop_index(op.f("ix_membership_actions_donor_id"), table_name="membership_actions")
    op.drop_table("membership_actions")
    op.drop_index(op.f("ix_manage_links_donor_id"), table_name="manage_links")
    op.drop_table("manage_links")
