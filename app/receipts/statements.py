"""A donor's annual statement: the year's giving (a year of the reporting
zone) per currency, net of refunds and disputes, from the ledger's own rows
(app.ledger.rows_query, filtered as the finance donor page filters them), and
the donors who gave in a year.

Reads only; no Flask, no `stripe`. Amounts are what the donor was charged
(the CSV's donor_currency and donor_amount).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ledger
from app.donors import Donor
from app.finance.reports.journal import JournalFilter

GIFT_KINDS = ("donation", "membership_payment")
REFUND_KINDS = ("refund", "refund_failure")
DISPUTE_KINDS = ("dispute", "dispute_reversal")
FIRST_YEAR, LAST_YEAR = 2000, 9998


@dataclass(frozen=True)
class StatementLine:
    occurred_at: datetime
    kind: str
    currency: str
    amount_minor: int
    stripe_id: str


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    gifts_minor: int
    refunds_minor: int  # negative or zero
    disputes_minor: int  # negative or zero, or back up when reinstated
    payments: int

    @property
    def net_minor(self) -> int:
        return self.gifts_minor + self.refunds_minor + self.disputes_minor


@dataclass(frozen=True)
class Statement:
    donor_id: int
    email: str
    name: str | None
    year: int
    lines: tuple[StatementLine, ...]
    totals: tuple[CurrencyTotals, ...]


def year_bounds(year: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """1 January of `year` to 1 January of the next, midnights in `zone`, in UTC."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"{year} is not a year between {FIRST_YEAR} and {LAST_YEAR}")
    return (
        datetime(year, 1, 1, tzinfo=zone).astimezone(UTC),
        datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC),
    )


def donors_for_year(session: Session, year: int, zone: ZoneInfo) -> list[int]:
    """Donors with at least one payment in the year, by number."""
    since, until = year_bounds(year, zone)
    rows = ledger.rows_query(since, until).subquery("r")
    query = (
        select(rows.c.donor_id)
        .distinct()
        .where(rows.c.kind.in_(GIFT_KINDS), rows.c.donor_id.is_not(None))
        .order_by(rows.c.donor_id)
    )
    return [int(donor_id) for donor_id in session.scalars(query)]


def statement_for(session: Session, donor_id: int, year: int, zone: ZoneInfo) -> Statement | None:
    """The donor's statement for the year (None for an unknown donor)."""
    donor = session.get(Donor, donor_id)
    if donor is None:
        return None
    since, until = year_bounds(year, zone)
    filters = JournalFilter.for_donor(session, donor_id, since=since, until=until)
    rows = filters.rows()
    query = filters.apply(select(rows), rows).order_by(rows.c.occurred_at, rows.c.key)
    lines = []
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for result in session.execute(query):
        row = ledger.row_from(result)
        group = (
            0
            if row.kind in GIFT_KINDS
            else 1
            if row.kind in REFUND_KINDS
            else 2
            if row.kind in DISPUTE_KINDS
            else None
        )
        if group is None:
            continue
        lines.append(
            StatementLine(
                row.occurred_at, row.kind, row.donor_currency, row.donor_amount_minor, row.stripe_id
            )
        )
        figures = sums[row.donor_currency]
        figures[group] += row.donor_amount_minor
        figures[3] += 1 if group == 0 else 0
    totals = tuple(
        CurrencyTotals(currency, gifts, refunds, disputes, count)
        for currency, (gifts, refunds, disputes, count) in sorted(sums.items())
    )
    return Statement(donor.id, donor.email, donor.name, year, tuple(lines), totals)
