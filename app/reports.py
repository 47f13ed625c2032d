"""Read queries behind the finance staff pages: monthly figures per currency in
the reporting time zone, the filtered journal with keyset pagination and its
totals, donors, memberships, campaigns and the webhook pipeline's health.

Every money figure comes from `app.ledger.rows_query`, the rows of the ledger
CSV, or from its daily sums kept in `app.ledger_totals` (whole UTC days; the
days a boundary cuts are read live), so a page never disagrees with the export
or the summary. Reads only: no
Flask, no `stripe`, no writes, no commits. Amounts of different currencies are
never added together.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Index,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app import ledger, ledger_totals
from app.donors import normalise_email
from app.models import Checkout, Donor
from app.records import Membership, Payment
from webhooks.inbox import StripeEvent

# Indexes the finance pages need on other modules' tables (migration 0006):
# keyset pagination and month ranges walk (occurred_at, key), the CSV's order;
# new donors per month read donors by created_at; the events page and "last
# received" read the inbox newest first. Donor search uses trigram GIN
# indexes on PostgreSQL (pg_trgm; plain indexes on SQLite).
Index(
    "ix_journal_entries_occurred_at_key", ledger.JournalEntry.occurred_at, ledger.JournalEntry.key
)
# A movement's settlement is found by its object id among settlements only.
Index(
    "ix_journal_entries_settlement_object",
    ledger.JournalEntry.stripe_object_id,
    postgresql_where=ledger.JournalEntry.kind == "settlement",
    postgresql_include=["currency", "amount_minor", "fee_minor", "net_minor"],
    sqlite_where=ledger.JournalEntry.kind == "settlement",
)
Index("ix_donors_created_at", Donor.created_at)
Index("ix_stripe_events_received_at", StripeEvent.received_at)
Index(
    "ix_donors_email_trgm",
    Donor.email,
    postgresql_using="gin",
    postgresql_ops={"email": "gin_trgm_ops"},
)
Index(
    "ix_donors_name_trgm",
    Donor.name,
    postgresql_using="gin",
    postgresql_ops={"name": "gin_trgm_ops"},
)

PAGE_SIZE = 50
MONTHS_ON_DASHBOARD = 13  # this month and the twelve before it
ACTIVE_STATUSES = ("active", "past_due")
MEMBERSHIP_STATUSES = ("active", "past_due", "canceled")
EVENT_STATUSES = ("pending", "processed", "failed", "dead", "skipped")


class ReportError(ValueError):
    """A filter a person typed that cannot be used; the message says why."""


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


# -- figures (the contract's summary definitions) ------------------------------------


@dataclass
class Figures:
    """One currency's totals over some rows, in minor units, defined as the
    summary JSON defines them (CONTRACT.md): net = gross - fees + refunds +
    disputes + other."""

    gross: int = 0
    fees: int = 0
    refunds: int = 0
    disputes: int = 0
    other: int = 0
    payouts: int = 0
    payments: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.fees + self.refunds + self.disputes + self.other

    def add(self, kind: str, amount: int, fee: int, count: int) -> None:
        """Add `count` rows of `kind` whose amounts sum to `amount` and fees to
        `fee` (each rule is linear, so grouped sums give the per-row result)."""
        if kind in ledger.PAYMENT_KINDS:
            self.gross += amount
            self.payments += count
        elif kind in ("refund", "refund_failure"):
            self.refunds += amount
        elif kind in ("dispute", "dispute_reversal"):
            self.disputes += amount
        elif kind == "adjustment":
            self.other += amount
        if kind in ("payout", "payout_failure"):
            self.payouts += amount
        else:
            self.fees += fee
        if kind == "stripe_fee":
            self.fees -= amount

    def as_plain(self, currency: str) -> dict[str, Any]:
        """The summary JSON's shape for one currency (decimal strings)."""
        from app.money import format_plain

        return {
            "gross": format_plain(self.gross, currency),
            "fees": format_plain(self.fees, currency),
            "refunds": format_plain(self.refunds, currency),
            "disputes": format_plain(self.disputes, currency),
            "other": format_plain(self.other, currency),
            "net": format_plain(self.net, currency),
            "payouts": format_plain(self.payouts, currency),
            "payments": self.payments,
        }


def _figures_of(groups: Sequence[Any]) -> dict[str, Figures]:
    """{currency: Figures} from (currency, kind, amount, fee, count) groups."""
    result: dict[str, Figures] = defaultdict(Figures)
    for currency, kind, amount, fee, count in groups:
        result[currency].add(kind, int(amount or 0), int(fee or 0), int(count))
    return dict(sorted(result.items()))


def _grouped(rows: Any, *extra: Any) -> Select[Any]:
    return select(
        *extra,
        rows.c.currency,
        rows.c.kind,
        func.sum(rows.c.amount_minor),
        func.sum(func.coalesce(rows.c.fee_minor, 0)),
        func.count(),
    ).group_by(*extra, rows.c.currency, rows.c.kind)


@dataclass
class Month:
    first: date  # first day, in the reporting zone
    figures: dict[str, Figures] = field(default_factory=dict)
    new_donors: int = 0

    @property
    def next_first(self) -> date:
        return add_months(self.first, 1)


# -- totals from the daily rollup -------------------------------------------------------


def _utc_midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


_DAY = timedelta(days=1)


def _day_from(moment: datetime) -> datetime:
    """The first UTC midnight at or after `moment`."""
    midnight = _utc_midnight(moment)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def _live_days(edges: Sequence[datetime | None]) -> list[datetime]:
    """The UTC days (their midnights) that an edge cuts in two: read live."""
    return sorted({_utc_midnight(e) for e in edges if e is not None and e != _utc_midnight(e)})


def _tag(column: Any, cuts: Sequence[Any]) -> Any:
    """The index of the range a value falls in, given ascending cut points."""
    if not cuts:
        return literal(0)
    return case(*[(column < cut, n) for n, cut in enumerate(cuts)], else_=len(cuts))


def ranged_groups(
    session: Session,
    since: datetime | None,
    until: datetime | None,
    cuts: Sequence[datetime] = (),
    *,
    kind: str | None = None,
    currency: str | None = None,
) -> dict[int, list[Any]]:
    """(currency, kind, amount, fee, count) groups of the CSV's rows from
    `since` (inclusive) to `until` (exclusive; None: unbounded), split at the
    ascending instants `cuts` into ranges 0..len(cuts), optionally of one kind
    and currency.

    Whole UTC days come from the daily rollup (app.ledger_totals). A UTC day
    that `since`, `until` or a cut (a local midnight such as 05:00 or 18:15
    UTC) divides is read from the rows, but only its shorter pieces: the
    longest piece is the day's rollup total minus the others, so a month's
    edge costs a few hours of rows, not a day's."""
    cuts = list(cuts)
    sums: dict[int, dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, 0])
    )

    def add(part: int, cur: str, knd: str, amount: Any, fee: Any, n: Any, sign: int = 1) -> None:
        found = sums[part][(cur, knd)]
        found[0] += sign * int(amount or 0)
        found[1] += sign * int(fee or 0)
        found[2] += sign * int(n or 0)

    # Whole days inside the range, not divided by any edge.
    edges = sorted({e for e in (since, *cuts, until) if e is not None})
    live = _live_days(edges)
    day = ledger_totals.LedgerDailyTotal
    index = _tag(day.day_utc, [_day_from(c).date() for c in cuts]).label("part")
    rolled = select(
        index,
        day.currency,
        day.kind,
        func.sum(day.amount_minor),
        func.sum(day.fee_minor),
        func.sum(day.row_count),
    ).group_by(index, day.currency, day.kind)
    if since is not None:
        rolled = rolled.where(day.day_utc >= _day_from(since).date())
    if until is not None:
        rolled = rolled.where(day.day_utc < _utc_midnight(until).date())
    if live:
        rolled = rolled.where(day.day_utc.not_in([d.date() for d in live]))
    rolled = _only(rolled, day.kind, day.currency, kind, currency)
    for part, cur, knd, amount, fee, n in session.execute(rolled):
        add(int(part), cur, knd, amount, fee, n)

    # Divided days: pieces between edges; each read from the rows, except the
    # longest one of a day when it is in the range (the day's total minus the rest).
    pieces: list[tuple[datetime, datetime]] = []
    piece_part: list[int | None] = []  # the range a piece counts in, None: outside
    by_difference: dict[date, tuple[int, list[int]]] = {}  # day: (its part, pieces to take off)
    for midnight in live:
        points = [midnight, *[e for e in edges if midnight < e < midnight + _DAY], midnight + _DAY]
        spans = list(pairwise(points))
        parts = [
            bisect_right(cuts, a)
            if (since is None or a >= since) and (until is None or b <= until)
            else None
            for a, b in spans
        ]
        longest = max(range(len(spans)), key=lambda i: spans[i][1] - spans[i][0])
        longest_part = parts[longest]
        read = [i for i in range(len(spans)) if i != longest or longest_part is None]
        if longest_part is None:
            read = [i for i in read if parts[i] is not None]
        numbers = []
        for i in read:
            numbers.append(len(pieces))
            pieces.append(spans[i])
            piece_part.append(parts[i])
        if longest_part is not None:
            by_difference[midnight.date()] = (longest_part, numbers)

    piece_sums: dict[int, list[tuple[str, str, Any, Any, Any]]] = defaultdict(list)
    if pieces:
        # One query for every piece: an OR of time ranges (a bitmap of index
        # ranges on occurred_at), each row labelled with its piece.
        live_rows = ledger.rows_query(records=False).subquery("l")
        moment = live_rows.c.occurred_at
        in_piece = [and_(moment >= a, moment < b) for a, b in pieces]
        rows = (
            select(
                case(*[(cond, n) for n, cond in enumerate(in_piece)]).label("piece"),
                live_rows.c.currency,
                live_rows.c.kind,
                live_rows.c.amount_minor,
                live_rows.c.fee_minor,
            )
            .where(or_(*in_piece))
            .subquery("r")
        )
        grouped = _only(_grouped(rows, rows.c.piece), rows.c.kind, rows.c.currency, kind, currency)
        for piece, cur, knd, amount, fee, n in session.execute(grouped):
            piece_sums[int(piece)].append((cur, knd, amount, fee, n))
    for number, part in enumerate(piece_part):
        if part is not None:
            for cur, knd, amount, fee, n in piece_sums[number]:
                add(part, cur, knd, amount, fee, n)
    if by_difference:
        whole = select(
            day.day_utc, day.currency, day.kind, day.amount_minor, day.fee_minor, day.row_count
        ).where(day.day_utc.in_(sorted(by_difference)))
        for found_day, cur, knd, amount, fee, n in session.execute(
            _only(whole, day.kind, day.currency, kind, currency)
        ):
            add(by_difference[ledger_totals.as_date(found_day)][0], cur, knd, amount, fee, n)
        for part, numbers in by_difference.values():
            for number in numbers:
                for cur, knd, amount, fee, n in piece_sums[number]:
                    add(part, cur, knd, amount, fee, n, sign=-1)

    # A group of no rows (a movement recognised in one currency and settled
    # in another leaves one at zero) is not a currency of the range.
    return {
        part: [(cur, knd, a, f, n) for (cur, knd), (a, f, n) in sorted(groups.items()) if n]
        for part, groups in sums.items()
    }


def _only(
    query: Select[Any],
    kind_column: Any,
    currency_column: Any,
    kind: str | None,
    currency: str | None,
) -> Select[Any]:
    if kind:
        query = query.where(kind_column == kind)
    if currency:
        query = query.where(currency_column == currency)
    return query


def monthly_figures(
    session: Session, zone: ZoneInfo, now: datetime, count: int = MONTHS_ON_DASHBOARD
) -> list[Month]:
    """Figures per currency for each of the last `count` months (oldest first),
    month boundaries taken in `zone`: whole UTC days from the daily rollup,
    the days cut by a local midnight from the journal (`ranged_groups`)."""
    firsts = month_firsts(now, zone, count)
    bounds = [day_start(first, zone) for first in [*firsts, add_months(firsts[-1], 1)]]
    months = [Month(first) for first in firsts]
    per_month = ranged_groups(session, bounds[0], bounds[-1], bounds[1:-1])
    for index, groups in per_month.items():
        months[index].figures = _figures_of(groups)

    donor_month = case(
        *[(Donor.created_at < bound, n) for n, bound in enumerate(bounds[1:-1])],
        else_=len(firsts) - 1,
    )
    created = (
        select(donor_month.label("month"))
        .where(Donor.created_at >= bounds[0], Donor.created_at < bounds[-1])
        .subquery("d")
    )
    for month, n in session.execute(
        select(created.c.month, func.count()).group_by(created.c.month)
    ):
        months[int(month)].new_donors = int(n)
    return months


def figures_between(
    session: Session, since: datetime | None, until: datetime | None
) -> dict[str, Figures]:
    """Figures per currency over the rows from `since` (inclusive) to `until`."""
    return _figures_of(ranged_groups(session, since, until).get(0, []))


# -- the journal ---------------------------------------------------------------------


@dataclass(frozen=True)
class JournalFilter:
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    currency: str | None = None
    campaign: str | None = None
    donor_id: int | None = None
    # The donor's charges (donor_charge_ids), set by `for_donor`.
    donor_charges: tuple[str, ...] = ()

    @classmethod
    def for_donor(cls, session: Session, donor_id: int | None, **filters: Any) -> JournalFilter:
        charges = donor_charge_ids(session, donor_id) if donor_id is not None else ()
        return cls(donor_id=donor_id, donor_charges=charges, **filters)

    def apply(self, query: Select[Any], rows: Any) -> Select[Any]:
        if self.kind:
            query = query.where(rows.c.kind == self.kind)
        if self.currency:
            query = query.where(rows.c.currency == self.currency)
        if self.campaign:
            query = query.where(rows.c.campaign == self.campaign)
        if self.donor_id is not None:
            query = query.where(_donor_condition(rows, self.donor_id, self.donor_charges))
        return query

    def rows(self, *, money_only: bool = False) -> Any:
        """The rows to filter (as a subquery). `money_only` leaves out the
        records' columns where no filter needs them (cheaper totals)."""
        records = not money_only or self.campaign is not None or self.donor_id is not None
        return ledger.rows_query(self.since, self.until, records=records).subquery("r")


def _donor_condition(rows: Any, donor_id: int, charge_ids: Sequence[str]) -> Any:
    """Rows whose donor is `donor_id`. The row's donor is a coalesce no index
    can serve, so it is narrowed first by indexed columns: the entry's donor,
    or one of the donor's charges (looked up beforehand: a literal list lets
    PostgreSQL combine both indexes)."""
    narrowed = rows.c.entry_donor_id == donor_id
    if charge_ids:
        narrowed = or_(narrowed, rows.c.stripe_charge_id.in_(list(charge_ids)))
    return and_(narrowed, rows.c.donor_id == donor_id)


def donor_charge_ids(session: Session, donor_id: int) -> tuple[str, ...]:
    """The charges of a donor's payments and of their memberships' payments."""
    own = select(Payment.stripe_charge_id).where(Payment.donor_id == donor_id)
    as_member = (
        select(Payment.stripe_charge_id)
        .join(Membership, Membership.stripe_subscription_id == Payment.stripe_subscription_id)
        .where(Membership.donor_id == donor_id)
    )
    return tuple(sorted(set(session.scalars(own)) | set(session.scalars(as_member))))


@dataclass(frozen=True)
class Cursor:
    """A position in the journal: the (occurred_at, key) of a row, the order
    of the ledger CSV (the key makes it total and independent of the order in
    which events arrived)."""

    occurred_at: datetime
    key: str

    def encode(self) -> str:
        text = f"{self.occurred_at.astimezone(UTC).isoformat()}\n{self.key}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str | None) -> Cursor | None:
        if not token:
            return None
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            stamp, key = text.split("\n", 1)
            moment = datetime.fromisoformat(stamp)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ReportError("that page link is broken; start from the first page") from exc
        if moment.tzinfo is None:
            raise ReportError("that page link is broken; start from the first page")
        return cls(moment.astimezone(UTC), key)


@dataclass(frozen=True)
class JournalLine:
    row: ledger.Row
    key: str
    donor_id: int | None


@dataclass
class JournalPage:
    lines: list[JournalLine]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None


def _after(rows: Any, cursor: Cursor) -> Any:
    # occurred_at >= t first, so the (occurred_at, key) index serves the range.
    return and_(
        rows.c.occurred_at >= cursor.occurred_at,
        or_(rows.c.occurred_at > cursor.occurred_at, rows.c.key > cursor.key),
    )


def _before(rows: Any, cursor: Cursor) -> Any:
    return and_(
        rows.c.occurred_at <= cursor.occurred_at,
        or_(rows.c.occurred_at < cursor.occurred_at, rows.c.key < cursor.key),
    )


def _line(result: Any) -> JournalLine:
    return JournalLine(ledger.row_from(result), result.key, result.donor_id)


def journal_page(
    session: Session,
    filters: JournalFilter,
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> JournalPage:
    """One page of the filtered journal, oldest first, by keyset: the rows
    after `after` (or before `before`), never OFFSET."""
    rows = filters.rows()
    query = filters.apply(select(rows), rows)
    if before is not None:
        query = query.where(_before(rows, before))
        query = query.order_by(rows.c.occurred_at.desc(), rows.c.key.desc()).limit(size + 1)
        found = [_line(r) for r in session.execute(query)]
        more_before = len(found) > size
        lines = list(reversed(found[:size]))
        return JournalPage(
            lines,
            next_cursor=_cursor(lines[-1]) if lines else None,
            previous_cursor=_cursor(lines[0]) if lines and more_before else None,
        )
    if after is not None:
        query = query.where(_after(rows, after))
    query = query.order_by(rows.c.occurred_at, rows.c.key).limit(size + 1)
    found = [_line(r) for r in session.execute(query)]
    lines = found[:size]
    return JournalPage(
        lines,
        next_cursor=_cursor(lines[-1]) if len(found) > size else None,
        previous_cursor=_cursor(lines[0]) if lines and after is not None else None,
    )


def _cursor(line: JournalLine) -> Cursor:
    return Cursor(line.row.occurred_at, line.key)


def journal_totals(session: Session, filters: JournalFilter) -> dict[str, Figures]:
    """Figures per currency over the whole filtered set (every page): from
    the daily rollup for dates, kind and currency; campaign and donor filters,
    which it cannot answer, read the rows."""
    if filters.campaign is None and filters.donor_id is None:
        groups = ranged_groups(
            session,
            filters.since,
            filters.until,
            kind=filters.kind or None,
            currency=filters.currency or None,
        )
        return _figures_of(groups.get(0, []))
    rows = filters.rows(money_only=True)
    return _figures_of(session.execute(filters.apply(_grouped(rows), rows)).all())


def journal_csv_rows(session: Session, filters: JournalFilter) -> Iterator[list[str]]:
    """The filtered set as ledger CSV rows (app.ledger.format_row), in the
    export's order, streamed."""
    rows = filters.rows()
    query = (
        filters.apply(select(rows), rows)
        .order_by(rows.c.occurred_at, rows.c.key)
        .execution_options(yield_per=1000)
    )
    for result in session.execute(query):
        yield ledger.format_row(ledger.row_from(result))


def latest_payments(session: Session, limit: int = 10) -> list[JournalLine]:
    rows = ledger.rows_query().subquery("r")
    query = (
        select(rows)
        .where(rows.c.kind.in_(ledger.PAYMENT_KINDS))
        .order_by(rows.c.occurred_at.desc(), rows.c.key.desc())
        .limit(limit)
    )
    return [_line(r) for r in session.execute(query)]


# -- donors ---------------------------------------------------------------------------


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_donors(
    session: Session, text: str, *, by_email: bool = True, limit: int = PAGE_SIZE
) -> list[Donor]:
    """Donors whose email starts with `text` (when `by_email`) or whose name
    contains it, case-insensitively, at most `limit`, by email. A number finds
    that donor id."""
    query_text = text.strip()
    if not query_text:
        return []
    conditions: list[ColumnElement[bool]] = [
        Donor.name.ilike(f"%{_like_escape(query_text)}%", escape="\\")
    ]
    if by_email:
        prefix = _like_escape(normalise_email(query_text))
        conditions.append(Donor.email.like(f"{prefix}%", escape="\\"))
    if query_text.isdigit():
        conditions.append(Donor.id == int(query_text))
    query = select(Donor).where(or_(*conditions)).order_by(Donor.email).limit(limit)
    return list(session.scalars(query))


def find_donor_id(session: Session, text: str, *, by_email: bool) -> int | None:
    """A donor named by id ("42") or, when allowed, by exact email."""
    value = text.strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    if not by_email:
        raise ReportError("filter by the donor's number")
    found = session.scalar(select(Donor.id).where(Donor.email == normalise_email(value)))
    if found is None:
        raise ReportError("no donor has that email")
    return int(found)


@dataclass
class DonorHistory:
    donor: Donor
    lifetime: dict[str, Figures]
    memberships: list[Membership]
    lines: list[JournalLine]


def donor_history(session: Session, donor_id: int) -> DonorHistory | None:
    """A donor, their lifetime figures per currency, memberships, and every
    movement of theirs (payments, refunds, disputes), oldest first."""
    donor = session.get(Donor, donor_id)
    if donor is None:
        return None
    filters = JournalFilter.for_donor(session, donor_id)
    rows = filters.rows()
    query = filters.apply(select(rows), rows).order_by(rows.c.occurred_at, rows.c.key)
    lines = [_line(r) for r in session.execute(query)]
    lifetime: dict[str, Figures] = defaultdict(Figures)
    for line in lines:
        lifetime[line.row.currency].add(
            line.row.kind, line.row.amount_minor, line.row.fee_minor or 0, 1
        )
    memberships = list(
        session.scalars(
            select(Membership).where(Membership.donor_id == donor_id).order_by(Membership.id)
        )
    )
    return DonorHistory(donor, dict(sorted(lifetime.items())), memberships, lines)


# -- memberships ----------------------------------------------------------------------


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
    counts = {status: 0 for status in MEMBERSHIP_STATUSES}
    for status, n in session.execute(
        select(Membership.status, func.count()).group_by(Membership.status)
    ):
        counts[status] = int(n)
    monthly: dict[str, int] = defaultdict(int)
    yearly: dict[str, int] = defaultdict(int)
    for currency, interval, total in session.execute(
        select(Membership.currency, Membership.interval, func.sum(Membership.amount_minor))
        .where(Membership.status.in_(ACTIVE_STATUSES), Membership.currency.is_not(None))
        .group_by(Membership.currency, Membership.interval)
    ):
        if currency is None:
            continue
        if interval == "year":
            yearly[currency] += int(total or 0)
        elif interval == "month":
            monthly[currency] += int(total or 0)
    mrr = {
        currency: monthly_amount(monthly.get(currency, 0), yearly.get(currency, 0))
        for currency in sorted(set(monthly) | set(yearly))
    }
    start = day_start(month_of(now, zone), zone)
    ended = func.coalesce(Membership.ended_at, Membership.canceled_at)
    churned = session.scalar(
        select(func.count()).where(Membership.status == "canceled", ended >= start, ended < now)
    )
    alive_at_start = session.scalar(
        select(func.count()).where(
            Membership.created_at < start,
            Membership.status.not_in(("incomplete", "incomplete_expired")),
            or_(ended.is_(None), ended >= start),
        )
    )
    return MembershipStats(
        counts=counts,
        active=sum(counts.get(s, 0) for s in ACTIVE_STATUSES),
        mrr=mrr,
        churned_this_month=int(churned or 0),
        active_at_month_start=int(alive_at_start or 0),
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


# -- campaigns ------------------------------------------------------------------------


@dataclass
class CampaignLine:
    campaign: str | None
    utm_source: str | None
    figures: dict[str, Figures] = field(default_factory=dict)
    created: int = 0
    completed: int = 0
    expired: int = 0

    @property
    def conversion_basis_points(self) -> int | None:
        if not self.created:
            return None
        return (20_000 * self.completed + self.created) // (2 * self.created)


def campaign_report(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[CampaignLine]:
    """Per (campaign, utm_source): the ledger's figures per currency, and the
    Checkout Sessions created, completed and expired (the `checkouts` table,
    by their creation time) in the same range."""
    lines: dict[tuple[str | None, str | None], CampaignLine] = {}

    def line(campaign: str | None, source: str | None) -> CampaignLine:
        key = (campaign, source)
        if key not in lines:
            lines[key] = CampaignLine(campaign, source)
        return lines[key]

    rows = ledger.rows_query(since, until).subquery("r")
    grouped: dict[tuple[str | None, str | None], list[Any]] = defaultdict(list)
    for campaign, source, currency, kind, amount, fee, n in session.execute(
        _grouped(rows, rows.c.campaign, rows.c.utm_source).where(
            rows.c.kind.in_(
                (*ledger.PAYMENT_KINDS, "refund", "refund_failure", "dispute", "dispute_reversal")
            )
        )
    ):
        grouped[(campaign, source)].append((currency, kind, amount, fee, n))
    for (campaign, source), groups in grouped.items():
        line(campaign, source).figures = _figures_of(groups)

    completed = func.sum(case((Checkout.status == "complete", 1), else_=0))
    expired = func.sum(case((Checkout.status == "expired", 1), else_=0))
    query = select(
        Checkout.campaign, Checkout.utm_source, func.count(), completed, expired
    ).group_by(Checkout.campaign, Checkout.utm_source)
    if since is not None:
        query = query.where(Checkout.created_at >= since)
    if until is not None:
        query = query.where(Checkout.created_at < until)
    for campaign, source, n, done, gone in session.execute(query):
        found = line(campaign, source)
        found.created, found.completed, found.expired = int(n), int(done or 0), int(gone or 0)
    return sorted(
        lines.values(),
        key=lambda x: (
            x.campaign is None,
            x.campaign or "",
            x.utm_source is None,
            x.utm_source or "",
        ),
    )


# -- the webhook pipeline ---------------------------------------------------------------


@dataclass
class PipelineHealth:
    waiting: int  # pending: stored, not yet applied
    failed: int  # failed, to be retried
    dead: int  # out of attempts: needs a person
    last_received_at: datetime | None


def pipeline_health(session: Session) -> PipelineHealth:
    counts = dict(
        session.execute(
            select(StripeEvent.status, func.count())
            .where(StripeEvent.status.in_(("pending", "failed", "dead")))
            .group_by(StripeEvent.status)
        ).all()
    )
    last = session.scalar(select(func.max(StripeEvent.received_at)))
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return PipelineHealth(
        waiting=int(counts.get("pending", 0)),
        failed=int(counts.get("failed", 0)),
        dead=int(counts.get("dead", 0)),
        last_received_at=last,
    )


def list_events(
    session: Session,
    *,
    status: str | None = None,
    event_type: str | None = None,
    before_id: int | None = None,
    size: int = PAGE_SIZE,
) -> tuple[list[StripeEvent], int | None]:
    """Stored events, newest first (by row id, the order they were stored),
    keyset-paged: the page and the id to continue before."""
    query = select(StripeEvent)
    if status:
        query = query.where(StripeEvent.status == status)
    if event_type:
        query = query.where(StripeEvent.type == event_type)
    if before_id is not None:
        query = query.where(StripeEvent.id < before_id)
    found = list(session.scalars(query.order_by(StripeEvent.id.desc()).limit(size + 1)))
    page = found[:size]
    return page, (page[-1].id if len(found) > size else None)


def has_movements(session: Session) -> bool:
    """Whether the ledger holds any entry yet (for empty states)."""
    return session.scalar(select(ledger.JournalEntry.id).limit(1)) is not None
