"""The tables of "manage my membership": magic links (only a hash of each
token is kept) and membership actions, the record of every change a donor
asked for, written before Stripe is called. Definitions only: no queries, no
Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, one_of

ACTION_KINDS = ("cancel", "resume", "change", "update_card")
ACTION_STATUSES = ("pending", "sending", "sent", "failed")


class ManageLink(Base):
    """One request for a magic link. The donor is null when the email was not
    a donor's (nothing is sent then, and the address is not kept); the token's
    SHA-256 is set when the worker sends the link, and `used_at` when it is
    opened (once)."""

    __tablename__ = "manage_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"), index=True)
    locale: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    requested_at: Mapped[datetime] = mapped_column()
    issued_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class MembershipAction(Base):
    """A change a donor asked for on the manage page, recorded before the
    Stripe call. `form_token` is the form's single-use token (a double submit
    finds this row again); the Stripe idempotency key is derived from `id`.
    `params` is what the donor asked, `stripe_params` the request made of it."""

    __tablename__ = "membership_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id"), index=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), index=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[str] = mapped_column(Text)  # JSON
    reason: Mapped[str | None] = mapped_column(Text)
    form_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(10))
    stripe_params: Mapped[str | None] = mapped_column(Text)  # JSON
    stripe_error: Mapped[str | None] = mapped_column(String(32))  # PaymentsError.kind
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The billing portal session's address (update_card): a double submit goes
    # there again instead of asking Stripe for another.
    result_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    # When a request last took the row to send it (status sending): a second
    # request for the same form meanwhile sends nothing.
    claimed_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint(one_of("kind", ACTION_KINDS), name="kind_known"),
        CheckConstraint(one_of("status", ACTION_STATUSES), name="status_known"),
    )

    @property
    def idempotency_key(self) -> str:
        return f"membership_action:{self.id}"
