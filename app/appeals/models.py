"""The appeals' tables: admins' overrides of the configured appeals, and the
counters of impressions, clicks and nudges per appeal, variant, day and event.

Definitions only: no Flask, no commits. A counter holds a number, never a row
per view, an address, a cookie or anything else about a reader.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base, one_of

COUNTER_EVENTS = (
    "seen",  # the embed was shown (the beacon)
    "click",  # a reader arrived on /donate from the appeal
    "nudge_shown",  # the form offered the monthly equivalent of a one-time gift
    "nudge_switch",  # the reader took it
    "invite_shown",  # the thanks page invited a one-time donor to become a member
    "invite_click",  # the donor followed the invitation
)


class AppealOverride(Base):
    """An appeal as an admin wrote it in the finance area (TOML text): wins
    over config/appeals.toml for the same slug, or adds a new appeal."""

    __tablename__ = "appeal_overrides"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[int | None] = mapped_column(Integer)  # staff id


class AppealCounter(Base):
    """How many times `event` happened for (appeal, variant) on one UTC day.
    Written by an upsert (app.appeals.counters), one row per key."""

    __tablename__ = "appeal_counters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal: Mapped[str] = mapped_column(String(40))  # the slug; "" when none
    variant: Mapped[str] = mapped_column(String(20))  # the variant key; "" when none
    day: Mapped[date] = mapped_column(Date)
    event: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("appeal", "variant", "day", "event", name="uq_appeal_counters_key"),
        CheckConstraint(one_of("event", COUNTER_EVENTS), name="event_known"),
        CheckConstraint("count >= 0", name="count_not_negative"),
    )
