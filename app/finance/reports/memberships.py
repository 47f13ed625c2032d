"""Membership statistics (counts by status, MRR per currency, churn this
month in the reporting zone) and the keyset-paged membership list. Reads
only: never writes, and never adds MRR of different currencies together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.donors import Donor
from app.finance.reports.periods import PAGE_SIZE, day_start, month_of
from app.ledger.records import Membership

ACTIVE_STATUSES = ("active", "past_due")
MEMBERSHIP_STATUSES = ("active", "past_due", "canceled")


def monthly_amount(total_monthly: int, total_yearly: int) -> int:
    """MRR in minor units: monthly amounts as they are, plus the yearly ones
    summed per currency and divided by 12 once, rounded half up (integers only)."""
    return total_monthly + (2 * total_yearly + 12) // 24


@dataclass
class MembershipStats:
    counts: dict[str, int]  # by status (active, past_due, canceled, and any other seen)
    active: int  # active or past due, as the summary counts them
    mrr: dict[str, int]  # per currency, minor units
    churned_this_month: int
    active_at_month_start: int

    @property
    def churn_basis_points(self) -> int | None:
        """Churned this month / active at its start, in basis points (None when
        nobody was active), rounded half up."""
        if not self.active_at_month_start:
            return None
        return (20_000 * self.churned_this_month + self.active_at_month_start) // (
            2 * self.active_at_month_start
        )


def membership_stats(session: Session, zone: ZoneInfo, now: datetime) -> MembershipStats:
    """Counts by status, MRR per currency of active and past-due memberships,
    and churn this month: memberships that ended (or were canceled) since the
    month began, in the reporting zone, over those alive when it began."""
    start = day_start(month_of(now, zone), zone)
    ended = func.coalesce(Membership.ended_at, Membership.canceled_at)
    churned = and_(Membership.status == "canceled", ended >= start, ended < now)
    alive = and_(
        Membership.created_at < start,
        Membership.status.not_in(("incomplete", "incomplete_expired")),
        or_(ended.is_(None), ended >= start),
    )
    counts = {status: 0 for status in MEMBERSHIP_STATUSES}
    monthly: dict[str, int] = defaultdict(int)
    yearly: dict[str, int] = defaultdict(int)
    churned_this_month = alive_at_start = 0
    # One pass over the memberships, grouped by what the figures need.
    for status, currency, interval, n, total, n_churned, n_alive in session.execute(
        select(
            Membership.status,
            Membership.currency,
            Membership.interval,
            func.count(),
            func.sum(Membership.amount_minor),
            func.count().filter(churned),
            func.count().filter(alive),
        ).group_by(Membership.status, Membership.currency, Membership.interval)
    ):
        counts[status] = counts.get(status, 0) + int(n)
        churned_this_month += int(n_churned or 0)
        alive_at_start += int(n_alive or 0)
        if status not in ACTIVE_STATUSES or currency is None:
            continue
        if interval == "year":
            yearly[currency] += int(total or 0)
        elif interval == "month":
            monthly[currency] += int(total or 0)
    mrr = {
        currency: monthly_amount(monthly.get(currency, 0), yearly.get(currency, 0))
        for currency in sorted(set(monthly) | set(yearly))
    }
    return MembershipStats(
        counts=counts,
        active=sum(counts.get(s, 0) for s in ACTIVE_STATUSES),
        mrr=mrr,
        churned_this_month=churned_this_month,
        active_at_month_start=alive_at_start,
    )


def list_memberships(
    session: Session,
    *,
    status: str | None = None,
    currency: str | None = None,
    after_id: int | None = None,
    size: int = PAGE_SIZE,
) -> tuple[list[tuple[Membership, Donor | None]], int | None]:
    """Memberships (with their donor), by id, keyset-paged: the page and the
    id to continue after (None on the last page)."""
    query = select(Membership, Donor).outerjoin(Donor, Donor.id == Membership.donor_id)
    if status:
        query = query.where(Membership.status == status)
    if currency:
        query = query.where(Membership.currency == currency)
    if after_id is not None:
        query = query.where(Membership.id > after_id)
    found: list[tuple[Membership, Donor | None]] = [
        (m, d) for m, d in session.execute(query.order_by(Membership.id).limit(size + 1))
    ]
    page = found[:size]
    return page, (page[-1][0].id if len(found) > size else None)
