"""The sandbox's one table: Stripe-shaped JSON documents and the events waiting
to be delivered. Definitions only: no Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base


class SandboxObject(Base):
    """One object of the offline payments sandbox (app.sandbox): a Stripe-shaped
    JSON document under its Stripe-like id, or an event waiting to be delivered
    (`delivered_at` is null until the webhook endpoint answered 2xx)."""

    __tablename__ = "sandbox_objects"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
