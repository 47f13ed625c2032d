"""The filtered journal: its filter, keyset cursors and pages, totals over
every page, the CSV rows and the latest payments, all in the ledger CSV's
order. Reads only: never OFFSET, never writes or commits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from app import ledger
from app.finance.reports.periods import PAGE_SIZE, ReportError
from app.finance.reports.totals import Figures, figures_of, grouped_figures, ranged_groups
from app.ledger.records import Membership, Payment


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


def journal_line(result: Any) -> JournalLine:
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
        found = [journal_line(r) for r in session.execute(query)]
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
    found = [journal_line(r) for r in session.execute(query)]
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
        return figures_of(groups.get(0, []))
    rows = filters.rows(money_only=True)
    return figures_of(session.execute(filters.apply(grouped_figures(rows), rows)).all())


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
    return [journal_line(r) for r in session.execute(query)]


def has_movements(session: Session) -> bool:
    """Whether the ledger holds any entry yet (for empty states)."""
    return session.scalar(select(ledger.JournalEntry.id).limit(1)) is not None
