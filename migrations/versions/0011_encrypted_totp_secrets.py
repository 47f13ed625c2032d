"""staff TOTP secrets encrypted at rest: room for a "fernet:" token

The columns widen from 64 to 255 characters. Secrets already stored stay as
they are: a value without the "fernet:" prefix is read as a plain secret from
before, works, and is encrypted under DATA_ENCRYPTION_KEY at its next use, or
at once for every account with `donations staff rotate-secrets` (run it after
this upgrade). The migration reads no key, so it runs the same on any host.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("totp_secret", "totp_pending_secret")


def upgrade() -> None:
    with op.batch_alter_table("staff_members") as batch:
        for name in COLUMNS:
            batch.alter_column(
                name, existing_type=sa.String(length=64), type_=sa.String(length=255)
            )


def downgrade() -> None:
    # Encrypted secrets do not fit back in 64 characters: refuse rather than cut them.
    bind = op.get_bind()
    sealed = bind.execute(
        sa.text(
            "SELECT COUNT(*) FROM staff_members "
            "WHERE totp_secret LIKE 'fernet:%' OR totp_pending_secret LIKE 'fernet:%'"
        )
    ).scalar()
    if sealed:
        raise RuntimeError("encrypted TOTP secrets are stored; reset them before downgrading")
    with op.batch_alter_table("staff_members") as batch:
        for name in COLUMNS:
            batch.alter_column(
                name, existing_type=sa.String(length=255), type_=sa.String(length=64)
            )
