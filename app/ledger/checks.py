"""What the ledger reports about itself: summary (totals per currency), verify
(everything wrong with it) and entries_by_key (the journal, for comparing two).
Reads only: never posts or changes the journal; no Flask, no `stripe`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.ledger import totals as daily_totals
from app.ledger.models import PAYMENT_KINDS, JournalEntry, JournalPosting
from app.ledger.records import Membership, Payment, Refund
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
    unsettled: int = 0


def _summary_totals(
    session: Session, since: datetime | None, until: datetime | None
) -> tuple[dict[str, _Totals], int]:
    totals: dict[str, _Totals] = defaultdict(_Totals)
    donors: set[str] = set()
    for row in iter_rows(session, since, until):
        t = totals[row.currency]
        # A row whose balance transaction is not known yet counts with fee 0
        # (so its net is its amount) and is summed as unsettled.
        fee = row.fee_minor or 0
        if row.fee_minor is None:
            t.unsettled += row.amount_minor
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


def _posted_refunds_query() -> Any:
    """(charge id, Σ refunds posted for it), in the charge's currency and as
    positive amounts; a refund that failed gave its money back and counts
    no more (Stripe's `amount_refunded` drops it too)."""
    return (
        select(JournalEntry.stripe_charge_id, -func.sum(JournalEntry.amount_minor))
        .outerjoin(Refund, Refund.stripe_refund_id == JournalEntry.stripe_object_id)
        .where(
            JournalEntry.kind == "refund",
            or_(Refund.status.is_(None), Refund.status != "failed"),
        )
        .group_by(JournalEntry.stripe_charge_id)
    )


def posted_refunds(session: Session, charge_id: str) -> int:
    """What the ledger holds as refunded for one charge (minor units)."""
    query = _posted_refunds_query().where(JournalEntry.stripe_charge_id == charge_id)
    found = session.execute(query).first()
    return int(found[1]) if found is not None else 0


def refund_differences(session: Session) -> list[str]:
    """One line per charge whose refunded amount (as Stripe's charge says)
    differs from the refunds posted for it."""
    posted = {
        charge_id: int(total or 0) for charge_id, total in session.execute(_posted_refunds_query())
    }
    problems = []
    for charge_id, currency, refunded in session.execute(
        select(Payment.stripe_charge_id, Payment.currency, Payment.amount_refunded_minor)
        .where(Payment.amount_refunded_minor.is_not(None))
        .order_by(Payment.stripe_charge_id)
    ):
        held = int(posted.get(charge_id) or 0)
        if held != refunded:
            problems.append(
                f"charge {charge_id}: Stripe says {refunded} {currency} refunded, "
                f"the ledger's refunds add up to {held}"
            )
    return problems


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
            "unsettled": format_plain(t.unsettled, currency),
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
    # Every refund Stripe counts on a charge is posted, and no more.
    problems.extend(refund_differences(session))
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
