"""The staff tables: accounts, login sessions, the append-only audit log and
login throttles, with the role and stage names their CHECKs allow.

Data only: no Flask, no queries beyond the mapping, no commits.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.db import Base, one_of

ROLES = ("viewer", "finance", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
SESSION_STAGES = ("totp", "full")


class StaffError(ValueError):
    """Bad input for a staff change (email, role, password); the message says which."""


class Staff(Base):
    """A person who may log in to /ledger. Never deleted: disabled instead, so
    the audit log keeps pointing at them."""

    __tablename__ = "staff_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    totp_secret: Mapped[str | None] = mapped_column(String(255))  # "fernet:" + token
    totp_pending_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enrolled_at: Mapped[datetime | None] = mapped_column()
    totp_last_step: Mapped[int | None] = mapped_column(Integer)  # no code twice
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_normalised"),
        CheckConstraint(one_of("role", ROLES), name="role_known"),
    )

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None


class StaffSession(Base):
    """One login: the Flask session carries a random token, this row its hash.
    Checked on every request, so logout, a password change or disabling the
    account ends it whatever the cookie says."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_members.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))  # "totp": password done, code due
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    staff: Mapped[Staff] = relationship()

    __table_args__ = (CheckConstraint(one_of("stage", SESSION_STAGES), name="stage_known"),)


class AuditEntry(Base):
    """What staff did and what was tried against their accounts. Append-only:
    the migration adds triggers that refuse UPDATE and DELETE."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_members.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object

    actor: Mapped[Staff | None] = relationship()

    __table_args__ = (Index("ix_audit_entries_action_id", "action", "id"),)

    @property
    def details(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.detail or "{}")
        return value


class LoginThrottle(Base):
    """Failed attempts under one key: an account ("email:<digest>", known or
    not, so unknown emails are throttled alike) or a client address ("ip:...")."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()

    __table_args__ = (CheckConstraint("failures >= 0", name="failures_not_negative"),)
