"""What a reader asked for when they submitted the donation form, and the
Stripe Checkout Session made for it: the checkout record beside the ledger,
joined to payments by our id. Definitions only: no Flask, no `stripe`, no
commits. Money is `amount_minor` + `currency`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.db import Base, one_of
from app.donors.models import Donor

FREQUENCIES = ("once", "month", "year")
CHECKOUT_STATUSES = ("open", "complete", "expired")
DEDICATION_KINDS = ("honour", "memory")


class Checkout(Base):
    """What a reader asked for when they submitted the form, and the Stripe
    Checkout Session made for it. Its id is derived from the form's single-use
    nonce and the choices, so one submission is one row and one session."""

    __tablename__ = "checkouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    frequency: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # the gift itself
    fee_cover_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # added to cover fees
    total_minor: Mapped[int] = mapped_column(BigInteger)  # what the donor is charged
    cover_fees: Mapped[bool] = mapped_column(Boolean, default=False)
    campaign: Mapped[str | None] = mapped_column(String(100))
    utm_source: Mapped[str | None] = mapped_column(String(100))
    utm_medium: Mapped[str | None] = mapped_column(String(100))
    utm_content: Mapped[str | None] = mapped_column(String(100))
    utm_term: Mapped[str | None] = mapped_column(String(100))
    # "switch": the form's nudge made this gift monthly; "invite": the thanks
    # page's invitation to become a member (app.appeals measures both).
    nudge: Mapped[str | None] = mapped_column(String(8))
    dedication_kind: Mapped[str | None] = mapped_column(String(8))
    dedication_name: Mapped[str | None] = mapped_column(String(200))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    stripe_checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_checkout_url: Mapped[str | None] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    donor: Mapped[Donor] = relationship()

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("fee_cover_minor >= 0", name="fee_cover_not_negative"),
        CheckConstraint("total_minor = amount_minor + fee_cover_minor", name="total_adds_up"),
        CheckConstraint(one_of("frequency", FREQUENCIES), name="frequency_known"),
        CheckConstraint(one_of("status", CHECKOUT_STATUSES), name="status_known"),
        CheckConstraint(
            f"dedication_kind IS NULL OR {one_of('dedication_kind', DEDICATION_KINDS)}",
            name="dedication_kind_known",
        ),
        CheckConstraint("currency = lower(currency) AND length(currency) = 3", name="currency_iso"),
        Index("ix_checkouts_campaign_created_at", "campaign", "created_at"),
    )
