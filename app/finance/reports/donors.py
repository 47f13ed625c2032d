"""Donors for the finance pages: search by email prefix, name or number, a
donor named in a filter, and one donor's lifetime figures and movements.
Reads only: never writes, and never matches email when contacts are hidden.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from app.donors import Donor, normalise_email
from app.finance.reports.journal import JournalFilter, JournalLine, journal_line
from app.finance.reports.periods import PAGE_SIZE, ReportError
from app.finance.reports.totals import Figures
from app.ledger.records import Membership


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
