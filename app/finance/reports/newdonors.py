"""New donors per period: donors whose first payment (a donation or
membership_payment row of the ledger) falls in it. A donor who only opened a
checkout is not new: they have not given.

Read from the index of payment entries by donor and time (migration 0020):
each donor's first named payment is the first index entry of the donor,
aggregated in index order. The few payments posted before their donor was
known take their donor from the payment or membership record, as in the
CSV's rows. `FirstGifts` keeps the counts of the dashboard's closed months,
which only a payment dated before the current month can change: they are
reused while the number of such payments (the daily totals' row counts, kept
in the posting's own transaction) and those unnamed payments are unchanged.
Reads only: never writes or commits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from app import ledger
from app.ledger import totals as ledger_totals
from app.ledger.records import Membership, Payment

# Up to this span, a period's new donors are read from its own payments.
SHORT_SPAN = timedelta(days=45)


def _range_of(column: Any, cuts: Sequence[Any]) -> Any:
    """The index of the range a value falls in, given ascending cut points."""
    if not cuts:
        return literal(0)
    return case(*[(column < cut, n) for n, cut in enumerate(cuts)], else_=len(cuts))


def _unnamed(end: datetime) -> Any:
    """Payments before `end` whose entry names no donor: (donor_id, at, entry
    id), the donor from the payment or membership record."""
    late = aliased(ledger.JournalEntry, name="l")
    return (
        select(
            func.coalesce(Payment.donor_id, Membership.donor_id).label("donor_id"),
            late.occurred_at.label("at"),
            late.id.label("entry_id"),
        )
        .select_from(late)
        .join(Payment, Payment.stripe_charge_id == late.stripe_charge_id)
        .outerjoin(Membership, Membership.stripe_subscription_id == Payment.stripe_subscription_id)
        .where(late.kind.in_(ledger.PAYMENT_KINDS), late.donor_id.is_(None), late.occurred_at < end)
    )


def new_donor_counts(session: Session, bounds: Sequence[datetime]) -> list[int]:
    """For each range between consecutive `bounds` (ascending instants), the
    donors whose first payment falls in it. A short span (a month) is read
    from its own payments, each donor probed for an earlier one; a long one
    from every donor's first payment, aggregated in index order."""
    if len(bounds) < 2:
        return []
    if bounds[-1] - bounds[0] <= SHORT_SPAN:
        return _by_probes(session, bounds)
    return _by_first_payments(session, bounds)


def _counts(session: Session, firsts: Any, bounds: Sequence[datetime]) -> list[int]:
    part = _range_of(firsts.c.first_at, list(bounds[1:-1])).label("part")
    counts = [0] * (len(bounds) - 1)
    for index, n in session.execute(select(part, func.count()).select_from(firsts).group_by(part)):
        counts[int(index)] = int(n)
    return counts


def _by_probes(session: Session, bounds: Sequence[datetime]) -> list[int]:
    """The payments inside the ranges whose entry names its donor, less the
    donors with a named payment before the first bound (one probe each on
    the index), plus the unnamed payments."""
    start, end = bounds[0], bounds[-1]
    entry = aliased(ledger.JournalEntry, name="e")
    named = select(entry.donor_id.label("donor_id"), entry.occurred_at.label("at")).where(
        entry.kind.in_(ledger.PAYMENT_KINDS),
        entry.donor_id.is_not(None),
        entry.occurred_at >= start,
        entry.occurred_at < end,
    )
    unnamed = _unnamed(end).subquery("ur")
    payments = union_all(named, select(unnamed.c.donor_id, unnamed.c.at)).subquery("p")
    earlier = aliased(ledger.JournalEntry, name="b")
    gave_before = (
        select(earlier.id)
        .where(
            earlier.donor_id == payments.c.donor_id,
            earlier.kind.in_(ledger.PAYMENT_KINDS),
            earlier.occurred_at < start,
        )
        .exists()
    )
    first = (
        select(payments.c.donor_id, func.min(payments.c.at).label("first_at"))
        .where(payments.c.donor_id.is_not(None), ~gave_before)
        .group_by(payments.c.donor_id)
        .having(func.min(payments.c.at) >= start)
        .subquery("f")
    )
    return _counts(session, first, bounds)


def _by_first_payments(session: Session, bounds: Sequence[datetime]) -> list[int]:
    """Every donor's first named payment before the last bound (the index in
    donor order), the unnamed payments taken into account."""
    start, end = bounds[0], bounds[-1]
    entry = aliased(ledger.JournalEntry, name="e")
    # Each donor's first named payment: streamed from the index in donor order.
    named = (
        select(entry.donor_id.label("donor_id"), func.min(entry.occurred_at).label("first_at"))
        .where(
            entry.kind.in_(ledger.PAYMENT_KINDS),
            entry.donor_id.is_not(None),
            entry.occurred_at < end,
        )
        .group_by(entry.donor_id)
        .having(func.min(entry.occurred_at) >= start)
        .subquery("n")
    )
    unnamed_rows = _unnamed(end).subquery("ur")
    unnamed = (
        select(unnamed_rows.c.donor_id, func.min(unnamed_rows.c.at).label("first_at"))
        .where(unnamed_rows.c.donor_id.is_not(None))
        .group_by(unnamed_rows.c.donor_id)
        .subquery("u")
    )
    # First named payment in the ranges, unless an unnamed one came before start.
    earliest = case(
        (
            and_(unnamed.c.first_at.is_not(None), unnamed.c.first_at < named.c.first_at),
            unnamed.c.first_at,
        ),
        else_=named.c.first_at,
    )
    from_named = (
        select(earliest.label("first_at"))
        .select_from(named)
        .outerjoin(unnamed, unnamed.c.donor_id == named.c.donor_id)
        .where(or_(unnamed.c.first_at.is_(None), unnamed.c.first_at >= start))
    )
    # Donors with only unnamed payments before the end, the first in the ranges.
    earlier = aliased(ledger.JournalEntry, name="b")
    named_before_end = (
        select(earlier.id)
        .where(
            earlier.donor_id == unnamed.c.donor_id,
            earlier.kind.in_(ledger.PAYMENT_KINDS),
            earlier.occurred_at < end,
        )
        .exists()
    )
    from_unnamed = select(unnamed.c.first_at.label("first_at")).where(
        unnamed.c.first_at >= start, ~named_before_end
    )
    return _counts(session, union_all(from_named, from_unnamed).subquery("f"), bounds)


def _before_fingerprint(session: Session, moment: datetime) -> tuple[Any, ...]:
    """What changes whenever a payment dated before `moment` is posted or an
    unnamed one's donor becomes known: the number of payment rows on the UTC
    days up to `moment`'s (the daily totals, added in the posting's own
    transaction; append-only, so a count that is unchanged means no new
    payment), and the unnamed payments with their donors."""
    sums = ledger_totals.daily_sums()
    rows = session.scalar(
        select(func.coalesce(func.sum(sums.c.row_count), 0)).where(
            sums.c.kind.in_(ledger.PAYMENT_KINDS),
            sums.c.day_utc <= moment.astimezone(UTC).date(),
        )
    )
    unnamed = _unnamed(moment).subquery("ur")
    pending = session.execute(
        select(unnamed.c.entry_id, unnamed.c.donor_id).order_by(unnamed.c.entry_id)
    ).all()
    return (int(rows or 0), tuple(tuple(row) for row in pending))


class FirstGifts:
    """New-donor counts of closed ranges, kept per process for one database
    (one per app) and reused while `_before_fingerprint` of their end is
    unchanged; the last range (the current month) is always read. Holds the
    latest few keys (a reporting zone and month each)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.kept: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self.lock = threading.Lock()

    def counts(self, session: Session, bounds: Sequence[datetime]) -> list[int]:
        if len(bounds) < 3:
            return new_donor_counts(session, bounds)
        closed_bounds = list(bounds[:-1])
        key = (tuple(closed_bounds), _before_fingerprint(session, closed_bounds[-1]))
        with self.lock:
            closed = self.kept.get(key)
        if closed is None:
            closed = new_donor_counts(session, closed_bounds)
            with self.lock:
                self.kept[key] = closed
                while len(self.kept) > self.size:
                    self.kept.popitem(last=False)
        return [*closed, *new_donor_counts(session, bounds[-2:])]


__all__ = ["FirstGifts", "new_donor_counts"]
