"""Time in the reporting zone: the zone itself, the days staff type, month
boundaries as UTC instants, and how a timestamp reads; plus the reports'
shared ReportError, the checks of a filter's choice and currency, and page
sizes. Pure: never touches the database, Flask or `stripe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.money import is_currency_code

PAGE_SIZE = 50
MONTHS_ON_DASHBOARD = 13  # this month and the twelve before it


class ReportError(ValueError):
    """A filter a person typed that cannot be used; the message says why."""


def parse_choice(text: str | None, choices: Sequence[str], what: str) -> str | None:
    """One of `choices` (None for empty); anything else is a ReportError
    ("'x' is not <what>"), never a silently empty list."""
    value = (text or "").strip()
    if not value:
        return None
    if value not in choices:
        raise ReportError(f"{value!r} is not {what} (one of {', '.join(choices)})")
    return value


def parse_currency(text: str | None) -> str | None:
    """A three-letter ISO 4217 code, lower-cased (None for empty)."""
    value = (text or "").strip().lower()
    if not value:
        return None
    if not is_currency_code(value):
        raise ReportError(f"{value!r} is not a currency (a three-letter code such as usd)")
    return value


# -- time in the reporting zone -------------------------------------------------


def reporting_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"LEDGER_REPORTING_TZ {name!r} is not a time zone") from exc


def parse_day(text: str | None) -> date | None:
    """A YYYY-MM-DD day (None for empty), as the CLI takes it."""
    if not text or not text.strip():
        return None
    value = text.strip()
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ReportError(f"{value!r} is not a date in the form YYYY-MM-DD") from exc


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """Midnight at the start of `day` in the reporting zone, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def month_of(moment: datetime, zone: ZoneInfo) -> date:
    """The first day of the month `moment` falls in, in the reporting zone."""
    return moment.astimezone(zone).date().replace(day=1)


def add_months(first: date, months: int) -> date:
    index = first.year * 12 + (first.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def month_firsts(now: datetime, zone: ZoneInfo, count: int = MONTHS_ON_DASHBOARD) -> list[date]:
    """The first days of the last `count` months (this one last), oldest first."""
    this_month = month_of(now, zone)
    return [add_months(this_month, n) for n in range(-(count - 1), 1)]


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """How staff read a timestamp: minutes in the reporting zone, with its name."""
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# -- the dashboard's period ----------------------------------------------------------

PERIODS = ("month", "quarter", "year", "custom")


@dataclass(frozen=True)
class Period:
    """A span of reporting-zone days: `first` (inclusive) to `end` (exclusive)."""

    kind: str
    first: date
    end: date
    label: str

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        return day_start(self.first, zone), day_start(self.end, zone)


def choose_period(
    kind: str | None, since: str | None, until: str | None, now: datetime, zone: ZoneInfo
) -> Period:
    """This month, quarter or year in the reporting zone, or a custom range of
    days (`since` inclusive; `until` exclusive, empty: through today). A bad
    choice or date is a ReportError naming it."""
    chosen = parse_choice(kind, PERIODS, "a period") or "month"
    this_month = month_of(now, zone)
    if chosen == "month":
        return Period(chosen, this_month, add_months(this_month, 1), this_month.strftime("%B %Y"))
    if chosen == "quarter":
        first = this_month.replace(month=(this_month.month - 1) // 3 * 3 + 1)
        label = f"Q{(first.month - 1) // 3 + 1} {first.year}"
        return Period(chosen, first, add_months(first, 3), label)
    if chosen == "year":
        first = this_month.replace(month=1)
        return Period(chosen, first, add_months(first, 12), str(first.year))
    start, end = parse_day(since), parse_day(until)
    if start is None:
        raise ReportError("a custom period needs a start date (from)")
    if end is None:
        end = now.astimezone(zone).date() + timedelta(days=1)
    if end <= start:
        raise ReportError("the end date must be after the start date")
    last = end - timedelta(days=1)
    return Period(chosen, start, end, f"{start.isoformat()} to {last.isoformat()}")
