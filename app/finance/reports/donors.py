"""Donors for the finance pages: search by email prefix, name or number, a
donor named in a filter, one donor's lifetime figures and movements, and the
donor list ranked by lifetime giving or last gift in one currency.
Reads only: never writes, and never matches email when contacts are hidden.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from app import ledger
from app.donors import Donor, normalise_email
from app.finance.reports.journal import JournalFilter, JournalLine, journal_line
from app.finance.reports.periods import PAGE_SIZE, ReportError
from app.finance.reports.totals import Figures
from app.ledger.records import Membership, Payment

DONOR_SORTS = ("lifetime", "last_gift")
MAX_PAGE = 10_000


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
    lines = [journal_line(r) for r in session.execute(query)]
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


@dataclass(frozen=True)
class RankedDonor:
    donor_id: int
    email: str
    name: str | None
    currency: str
    lifetime_minor: int  # the payments' gross, as the donor was charged
    payments: int
    last_gift_at: datetime


def _ranking(currency: str, sort: str) -> Select[Any]:
    """Per donor: the gross and number of their payments in `currency` (what
    they were charged) and their last gift, in the `sort` order. One grouped
    query over the payment entries; a donor is the ledger rows' donor."""
    if sort not in DONOR_SORTS:
        raise ReportError(f"{sort!r} is not a sort order (one of {', '.join(DONOR_SORTS)})")
    entry = aliased(ledger.JournalEntry, name="e")
    donor_id = func.coalesce(Payment.donor_id, Membership.donor_id, entry.donor_id)
    grouped = (
        select(
            donor_id.label("donor_id"),
            func.sum(entry.amount_minor).label("lifetime"),
            func.count().label("payments"),
            func.max(entry.occurred_at).label("last_at"),
        )
        .select_from(entry)
        .outerjoin(Payment, Payment.stripe_charge_id == entry.stripe_charge_id)
        .outerjoin(Membership, Membership.stripe_subscription_id == Payment.stripe_subscription_id)
        .where(entry.kind.in_(ledger.PAYMENT_KINDS), entry.currency == currency)
        .group_by(donor_id)
        .subquery("g")
    )
    first = grouped.c.lifetime.desc() if sort == "lifetime" else grouped.c.last_at.desc()
    return (
        select(
            Donor.id,
            Donor.email,
            Donor.name,
            grouped.c.lifetime,
            grouped.c.payments,
            grouped.c.last_at,
        )
        .join(grouped, grouped.c.donor_id == Donor.id)
        .order_by(first, Donor.id)
    )


def _ranked(row: Any, currency: str) -> RankedDonor:
    # max() of a timestamp comes back naive (and on SQLite as text): UTC.
    last = row.last_at
    if isinstance(last, str):
        last = datetime.fromisoformat(last)
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return RankedDonor(
        int(row.id),
        row.email,
        row.name,
        currency,
        int(row.lifetime or 0),
        int(row.payments),
        last.astimezone(UTC),
    )


def rank_donors(
    session: Session, currency: str, sort: str, *, page: int = 1, size: int = PAGE_SIZE
) -> tuple[list[RankedDonor], bool]:
    """One page (from 1) of donors by lifetime giving or last gift in
    `currency`, and whether another page follows."""
    if not 1 <= page <= MAX_PAGE:
        raise ReportError(f"page must be a number from 1 to {MAX_PAGE}")
    query = _ranking(currency, sort).limit(size + 1).offset((page - 1) * size)
    found = [_ranked(row, currency) for row in session.execute(query)]
    return found[:size], len(found) > size


def ranked_donor_rows(session: Session, currency: str, sort: str) -> Iterator[RankedDonor]:
    """Every ranked donor in `currency`, in order, streamed (for the CSV)."""
    query = _ranking(currency, sort).execution_options(yield_per=1000)
    for row in session.execute(query):
        yield _ranked(row, currency)
