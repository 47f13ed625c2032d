"""Money figures per currency (the summary's definitions) and ranged totals:
whole UTC days from the daily rollup (app.ledger.totals.daily_sums: the
rolled-up sums and the changes not yet rolled up), the hours an edge
cuts read live from `app.ledger.rows_query`. Reads only: never writes, commits
or adds amounts of different currencies together.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from app import ledger
from app.finance.reports.newdonors import FirstGifts, new_donor_counts
from app.finance.reports.periods import MONTHS_ON_DASHBOARD, add_months, day_start, month_firsts
from app.ledger import totals as ledger_totals

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


def figures_of(groups: Sequence[Any]) -> dict[str, Figures]:
    """{currency: Figures} from (currency, kind, amount, fee, count) groups."""
    result: dict[str, Figures] = defaultdict(Figures)
    for currency, kind, amount, fee, count in groups:
        result[currency].add(kind, int(amount or 0), int(fee or 0), int(count))
    return dict(sorted(result.items()))


def grouped_figures(rows: Any, *extra: Any) -> Select[Any]:
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

    Whole UTC days come from the daily rollup (app.ledger.totals). A UTC day
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
    day = ledger_totals.daily_sums().c  # rolled-up sums and open changes, in one read
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
        grouped = _only(
            grouped_figures(rows, rows.c.piece), rows.c.kind, rows.c.currency, kind, currency
        )
        for piece, cur, knd, amount, fee, n in session.execute(grouped):
            piece_sums[int(piece)].append((cur, knd, amount, fee, n))
    for number, part in enumerate(piece_part):
        if part is not None:
            for cur, knd, amount, fee, n in piece_sums[number]:
                add(part, cur, knd, amount, fee, n)
    if by_difference:
        whole = (
            select(
                day.day_utc,
                day.currency,
                day.kind,
                func.sum(day.amount_minor),
                func.sum(day.fee_minor),
                func.sum(day.row_count),
            )
            .where(day.day_utc.in_(sorted(by_difference)))
            .group_by(day.day_utc, day.currency, day.kind)
        )
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
    session: Session,
    zone: ZoneInfo,
    now: datetime,
    count: int = MONTHS_ON_DASHBOARD,
    *,
    first_gifts: FirstGifts | None = None,
) -> list[Month]:
    """Figures per currency for each of the last `count` months (oldest first),
    month boundaries taken in `zone`: whole UTC days from the daily rollup,
    the days cut by a local midnight from the journal (`ranged_groups`); new
    donors through `first_gifts` (the closed months' counts kept) if given."""
    firsts = month_firsts(now, zone, count)
    bounds = [day_start(first, zone) for first in [*firsts, add_months(firsts[-1], 1)]]
    months = [Month(first) for first in firsts]
    per_month = ranged_groups(session, bounds[0], bounds[-1], bounds[1:-1])
    for index, groups in per_month.items():
        months[index].figures = figures_of(groups)

    counted = (
        first_gifts.counts(session, bounds) if first_gifts else new_donor_counts(session, bounds)
    )
    for month, n in enumerate(counted):
        months[month].new_donors = n
    return months


def figures_between(
    session: Session, since: datetime | None, until: datetime | None
) -> dict[str, Figures]:
    """Figures per currency over the rows from `since` (inclusive) to `until`."""
    return figures_of(ranged_groups(session, since, until).get(0, []))
