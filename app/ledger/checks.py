"""What the ledger reports about itself: summary (totals per currency), verify
(everything wrong with it) and entries_by_key (the journal, for comparing two).
Reads only: never posts or changes the journal; no Flask, no `stripe`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.ledger import totals as daily_totals
from app.ledger.models import PAYMENT_KINDS, JournalEntry, JournalPosting
from app.ledger.records import Membership
from app.ledger.rows import iter_rows
from app.money import format_plain


@dataclass
class _Totals:
    gross: int = 0
    fees: int = 0
    refunds: int = 0
    disputes: int = 0
    other: int = 0
    net: int = 0
    payouts: int = 0
    payments: int = 0


def _summary_totals(
    session: Session, since: datetime | None, until: datetime | None
) -> tuple[dict[str, _Totals], int]:
    totals: dict[str, _Totals] = defaultdict(_Totals)
    donors: set[str] = set()
    for row in iter_rows(session, since, until):
        t = totals[row.currency]
        fee = row.fee_minor or 0
        if row.kind in PAYMENT_KINDS:
            t.gross += row.amount_minor
            t.payments += 1
            if row.donor_email:
                donors.add(row.donor_email)
        elif row.kind in ("refund", "refund_failure"):
            t.refunds += row.amount_minor
        elif row.kind in ("dispute", "dispute_reversal"):
            t.disputes += row.amount_minor
        elif row.kind == "adjustment":
            t.other += row.amount_minor
        if row.kind in ("payout", "payout_failure"):
            t.payouts += row.amount_minor
        else:
            t.fees += fee
        if row.kind == "stripe_fee":
            t.fees -= row.amount_minor
    for t in totals.values():
        t.net = t.gross - t.fees + t.refunds + t.disputes + t.other
    return dict(totals), len(donors)


def count_active_memberships(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(Membership.id)).where(Membership.status.in_(("active", "past_due")))
        )
        or 0
    )


def summary(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Totals per currency over the CSV's rows (CONTRACT.md "Ledger summary JSON")."""
    totals, donors = _summary_totals(session, since, until)
    currencies = {
        currency: {
            "gross": format_plain(t.gross, currency),
            "fees": format_plain(t.fees, currency),
            "refunds": format_plain(t.refunds, currency),
            "disputes": format_plain(t.disputes, currency),
            "other": format_plain(t.other, currency),
            "net": format_plain(t.net, currency),
            "payouts": format_plain(t.payouts, currency),
            "payments": t.payments,
        }
        for currency, t in sorted(totals.items())
    }
    return {
        "currencies": currencies,
        "donors": donors,
        "active_memberships": count_active_memberships(session),
    }


def verify(session: Session) -> list[str]:
    """Everything wrong with the ledger, one line each; empty when it is sound."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(JournalEntry.key, JournalPosting.currency, func.sum(JournalPosting.amount_minor))
        .join(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .group_by(JournalEntry.key, JournalPosting.currency)
        .having(func.sum(JournalPosting.amount_minor) != 0)
        .order_by(JournalEntry.key)
    ).all()
    for key, currency, total in unbalanced:
        problems.append(f"entry {key} does not balance in {currency}: off by {total}")

    orphans = session.scalar(
        select(func.count(JournalPosting.id))
        .outerjoin(JournalEntry, JournalEntry.id == JournalPosting.entry_id)
        .where(JournalEntry.id.is_(None))
    )
    if orphans:
        problems.append(f"{orphans} postings belong to no entry")

    empty = session.scalars(
        select(JournalEntry.key)
        .outerjoin(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .where(JournalPosting.id.is_(None), JournalEntry.amount_minor != 0)
        .order_by(JournalEntry.key)
    ).all()
    problems.extend(f"entry {key} has no postings" for key in empty)

    # A settled charge or refund leaves nothing in the receivable.
    settled_objects = select(JournalEntry.stripe_object_id).where(JournalEntry.kind == "settlement")
    recognised_objects = select(JournalEntry.stripe_object_id).where(
        JournalEntry.kind.in_(("donation", "membership_payment", "refund"))
    )
    open_receivables = session.execute(
        select(
            JournalEntry.stripe_object_id,
            JournalPosting.currency,
            func.sum(JournalPosting.amount_minor),
        )
        .join(JournalPosting, JournalPosting.entry_id == JournalEntry.id)
        .where(
            JournalPosting.account == "stripe_receivable",
            JournalEntry.stripe_object_id.in_(settled_objects),
            JournalEntry.stripe_object_id.in_(recognised_objects),
        )
        .group_by(JournalEntry.stripe_object_id, JournalPosting.currency)
        .having(func.sum(JournalPosting.amount_minor) != 0)
        .order_by(JournalEntry.stripe_object_id)
    ).all()
    for object_id, currency, total in open_receivables:
        problems.append(f"{object_id} is settled but {total} {currency} stays receivable")

    # The summary's figures are the postings' figures.
    balance = dict(
        session.execute(
            select(JournalPosting.currency, func.sum(JournalPosting.amount_minor))
            .where(JournalPosting.account == "stripe_balance")
            .group_by(JournalPosting.currency)
        ).all()
    )
    bank = dict(
        session.execute(
            select(JournalPosting.currency, func.sum(JournalPosting.amount_minor))
            .where(JournalPosting.account == "bank")
            .group_by(JournalPosting.currency)
        ).all()
    )
    net_of_rows: dict[str, int] = defaultdict(int)
    payouts_of_rows: dict[str, int] = defaultdict(int)
    for row in iter_rows(session):
        net_of_rows[row.currency] += row.net_minor or 0
        if row.kind in ("payout", "payout_failure"):
            payouts_of_rows[row.currency] += row.amount_minor
    for currency in sorted(set(balance) | set(net_of_rows)):
        posted = int(balance.get(currency) or 0)
        if posted != net_of_rows.get(currency, 0):
            problems.append(
                f"stripe_balance in {currency} is {posted}, the export's net adds up to "
                f"{net_of_rows.get(currency, 0)}"
            )
    totals, _ = _summary_totals(session, None, None)
    for currency in sorted(set(bank) | set(payouts_of_rows)):
        posted = int(bank.get(currency) or 0)
        summarised = totals[currency].payouts if currency in totals else 0
        if posted != -summarised:
            problems.append(
                f"bank in {currency} is {posted}, the summary's payouts are {summarised}"
            )
    # The daily totals (derived) equal the journal's rows.
    problems.extend(daily_totals.differences(session))
    return problems


def entries_by_key(
    session: Session,
) -> dict[str, tuple[str, str, tuple[tuple[str, str, int], ...]]]:
    """The whole journal as {key: (kind, object id, sorted postings)}, for
    comparing two ledgers (tests, replays)."""
    result: dict[str, tuple[str, str, tuple[tuple[str, str, int], ...]]] = {}
    entries = session.execute(
        select(JournalEntry.id, JournalEntry.key, JournalEntry.kind, JournalEntry.stripe_object_id)
    ).all()
    postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for entry_id, account, currency, amount in session.execute(
        select(
            JournalPosting.entry_id,
            JournalPosting.account,
            JournalPosting.currency,
            JournalPosting.amount_minor,
        )
    ):
        postings[entry_id].append((account, currency, amount))
    for entry_id, key, kind, object_id in entries:
        result[key] = (kind, object_id, tuple(sorted(postings[entry_id])))
    return result
