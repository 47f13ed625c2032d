"""The appeals' funnel for the finance area: per appeal and variant the
impressions and clicks (counters), Checkout Sessions created and completed,
new members (the checkouts), gifts and revenue (the ledger's rows, as the CSV
has them), the conversion with a Wilson interval; the articles that brought
the most; and the nudge's own funnel. Reads only: never writes or commits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app import ledger
from app.appeals.models import AppealCounter
from app.donate.models import Checkout

Z_95 = 1.959964  # two-sided 95 %
TOP_ARTICLES = 10
NUDGES = {"switch": ("nudge_shown", "nudge_switch"), "invite": ("invite_shown", "invite_click")}


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[int, int] | None:
    """The Wilson score interval of a proportion, in basis points (floor,
    ceiling); None without trials. A ratio, not money: floats are fine here."""
    if trials <= 0:
        return None
    successes = max(0, min(successes, trials))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0, math.floor((centre - half) * 10_000)), min(
        10_000, math.ceil((centre + half) * 10_000)
    )


def ratio_bp(part: int, whole: int) -> int | None:
    """part/whole in basis points, rounded half up; None when whole is 0."""
    if whole <= 0:
        return None
    return (20_000 * part + whole) // (2 * whole)


@dataclass
class Step:
    """One appeal variant (or one nudge) through the funnel."""

    appeal: str
    variant: str
    seen: int = 0
    clicks: int = 0
    created: int = 0
    completed: int = 0
    members: int = 0
    gifts: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # currency -> gross, minor units

    @property
    def conversion_bp(self) -> int | None:
        """Gifts completed per impression."""
        return ratio_bp(self.completed, self.seen)

    @property
    def interval_bp(self) -> tuple[int, int] | None:
        return wilson_interval(self.completed, self.seen)

    @property
    def click_rate_bp(self) -> int | None:
        return ratio_bp(self.clicks, self.seen)


@dataclass
class Article:
    appeal: str
    article: str
    gifts: int = 0
    revenue: dict[str, int] = field(default_factory=dict)


@dataclass
class Funnel:
    steps: list[Step]
    articles: list[Article]
    nudges: list[Step]


def _days(since: datetime | None, until: datetime | None) -> list[Any]:
    """Counter days (UTC) of the range: the day an instant falls on."""
    where = []
    if since is not None:
        where.append(AppealCounter.day >= since.astimezone(UTC).date())
    if until is not None:
        where.append(AppealCounter.day < until.astimezone(UTC).date())
    return where


def _checkout_range(since: datetime | None, until: datetime | None) -> list[Any]:
    where = []
    if since is not None:
        where.append(Checkout.created_at >= since)
    if until is not None:
        where.append(Checkout.created_at < until)
    return where


def appeal_funnel(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> Funnel:
    steps: dict[tuple[str, str], Step] = {}

    def step(appeal: str | None, variant: str | None) -> Step:
        key = (appeal or "", variant or "")
        if key not in steps:
            steps[key] = Step(*key)
        return steps[key]

    counted = (
        select(
            AppealCounter.appeal,
            AppealCounter.variant,
            AppealCounter.event,
            func.sum(AppealCounter.count),
        )
        .where(AppealCounter.event.in_(("seen", "click")), *_days(since, until))
        .group_by(AppealCounter.appeal, AppealCounter.variant, AppealCounter.event)
    )
    for appeal, variant, event, total in session.execute(counted):
        found = step(appeal, variant)
        if event == "seen":
            found.seen = int(total or 0)
        else:
            found.clicks = int(total or 0)

    complete = Checkout.status == "complete"
    checkouts = (
        select(
            Checkout.campaign,
            Checkout.utm_term,
            func.count(),
            func.sum(case((complete, 1), else_=0)),
            func.sum(case((complete & (Checkout.frequency != "once"), 1), else_=0)),
        )
        .where(Checkout.utm_medium == "appeal", *_checkout_range(since, until))
        .group_by(Checkout.campaign, Checkout.utm_term)
    )
    for campaign, term, created, completed, members in session.execute(checkouts):
        found = step(campaign, term)
        found.created, found.completed, found.members = (
            int(created),
            int(completed or 0),
            int(members or 0),
        )

    rows = ledger.rows_query(since, until).subquery("r")
    payments = rows.c.kind.in_(ledger.PAYMENT_KINDS) & (rows.c.utm_medium == "appeal")
    money = (
        select(
            rows.c.campaign,
            rows.c.utm_term,
            rows.c.currency,
            func.count(),
            func.sum(rows.c.amount_minor),
        )
        .where(payments)
        .group_by(rows.c.campaign, rows.c.utm_term, rows.c.currency)
    )
    for campaign, term, currency, gifts, amount in session.execute(money):
        found = step(campaign, term)
        found.gifts += int(gifts)
        found.revenue[currency] = found.revenue.get(currency, 0) + int(amount or 0)

    articles: dict[tuple[str, str], Article] = {}
    by_article = (
        select(
            rows.c.campaign,
            rows.c.utm_content,
            rows.c.currency,
            func.count(),
            func.sum(rows.c.amount_minor),
        )
        .where(payments)
        .group_by(rows.c.campaign, rows.c.utm_content, rows.c.currency)
    )
    for campaign, content, currency, gifts, amount in session.execute(by_article):
        key = (campaign or "", content or "")
        article = articles.setdefault(key, Article(*key))
        article.gifts += int(gifts)
        article.revenue[currency] = article.revenue.get(currency, 0) + int(amount or 0)
    top = sorted(articles.values(), key=lambda a: (-a.gifts, a.appeal, a.article))[:TOP_ARTICLES]

    return Funnel(
        steps=sorted(steps.values(), key=lambda s: (s.appeal, s.variant)),
        articles=top,
        nudges=nudge_funnel(session, since, until),
    )


def nudge_funnel(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[Step]:
    """The nudge on the form ("switch") and the thanks page's invitation
    ("invite"), each as a variant: offered, taken, checkouts created and
    completed, and what those checkouts were for (per currency)."""
    events: dict[str, int] = defaultdict(int)
    counted = (
        select(AppealCounter.event, func.sum(AppealCounter.count))
        .where(*_days(since, until))
        .group_by(AppealCounter.event)
    )
    for event, total in session.execute(counted):
        events[event] = int(total or 0)
    found = {
        name: Step("nudge", name, events[shown], events[taken])
        for name, (shown, taken) in NUDGES.items()
    }
    complete = Checkout.status == "complete"
    checkouts = (
        select(
            Checkout.nudge,
            Checkout.currency,
            func.count(),
            func.sum(case((complete, 1), else_=0)),
            func.sum(case((complete, Checkout.amount_minor), else_=0)),
        )
        .where(Checkout.nudge.in_(tuple(NUDGES)), *_checkout_range(since, until))
        .group_by(Checkout.nudge, Checkout.currency)
    )
    for nudge, currency, created, completed, amount in session.execute(checkouts):
        one = found[nudge]
        one.created += int(created)
        one.completed += int(completed or 0)
        one.members += int(completed or 0)
        one.gifts += int(completed or 0)
        one.revenue[currency] = one.revenue.get(currency, 0) + int(amount or 0)
    return list(found.values())
