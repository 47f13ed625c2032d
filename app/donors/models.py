"""The donors' tables: a donor is a person, identified by normalised email, who
may have several Stripe customers. Definitions only: no queries, no Flask, no
`stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.db import Base


class Donor(Base):
    """A person, identified by normalised email; may have several Stripe customers."""

    __tablename__ = "donors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    customers: Mapped[list[StripeCustomer]] = relationship(back_populates="donor")

    __table_args__ = (CheckConstraint("email = lower(email)", name="email_normalised"),)


class StripeCustomer(Base):
    """A Stripe customer (cus_...) and the donor it belongs to."""

    __tablename__ = "stripe_customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id"), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    donor: Mapped[Donor] = relationship(back_populates="customers")
