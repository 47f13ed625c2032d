"""The reconcile report (CONTRACT.md, "Reconcile report JSON"): Stripe's
balance transactions in a window beside the ledger's entries for them, per
currency; what one side has and the other lacks; amount and fee mismatches;
charges left unsettled for more than a day; and per payout whether the
transactions inside it sum to it.

Every balance transaction is matched by its id (the ledger keys settlements
and movements on it). Streams page by page: memory holds the ids seen, not the
transactions. With `post`, balance transactions no object list posts (Stripe's
own fees, adjustments) are posted on the way, and a charge settled in the window
but created before it is fetched and applied. No Flask, no `stripe`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from app import ledger
from app.clock import utcnow
from app.db import Database
from app.ledger import JournalEntry
from app.money import format_plain
from app.payments import StripeLookup
from app.reconcile.payouts import link_transactions
from app.reconcile.sync import Pacer, Window, apply_object, synthetic_event
from webhooks import mapping

Json = dict[str, Any]
PAYOUT_TYPES = frozenset(["payout", "payout_cancel", "payout_failure"])
PAYMENT_TYPES = frozenset(["charge", "payment"])
UNSETTLED_AFTER = timedelta(days=1)


@dataclass
class Totals:
    gross: int = 0
    fees: int = 0
    net: int = 0

    def add(self, kind: str, amount: int, fee: int, net: int) -> None:
        """`kind`: "payment", "payout", "stripe_fee" or anything else."""
        if kind == "payout":
            return
        if kind == "payment":
            self.gross += amount
        self.fees += fee
        if kind == "stripe_fee":
            self.fees -= amount
        self.net += net

    def as_json(self, currency: str) -> dict[str, str]:
        return {
            "gross": format_plain(self.gross, currency),
            "fees": format_plain(self.fees, currency),
            "net": format_plain(self.net, currency),
        }


def txn_kind(txn: ledger.BalanceTxn) -> str:
    if txn.type in PAYOUT_TYPES:
        return "payout"
    if txn.type in PAYMENT_TYPES:
        return "payment"
    if txn.reporting_category == "fee" or ledger.OTHER_TYPES.get(txn.type) == "stripe_fee":
        return "stripe_fee"
    return "other"


def entry_kind(kind: str, object_id: str, charge_id: str | None) -> str:
    if kind in ("payout", "payout_failure"):
        return "payout"
    if kind == "settlement":
        return "payment" if object_id == charge_id else "other"
    return "stripe_fee" if kind == "stripe_fee" else "other"


@dataclass
class Report:
    window: Window
    stripe: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    ledger: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_category: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    missing_in_ledger: list[Json] = field(default_factory=list)
    unknown_to_stripe: list[Json] = field(default_factory=list)
    mismatches: list[Json] = field(default_factory=list)
    unsettled: list[Json] = field(default_factory=list)
    payouts: list[Json] = field(default_factory=list)
    posted: int = 0

    @property
    def differences(self) -> int:
        bad_payouts = sum(1 for p in self.payouts if p["automatic"] and not p["ties_out"])
        return (
            len(self.missing_in_ledger)
            + len(self.unknown_to_stripe)
            + len(self.mismatches)
            + len(self.unsettled)
            + bad_payouts
        )

    def as_json(self, zone: Any) -> Json:
        def day(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(zone).date().isoformat()

        currencies = sorted(set(self.stripe) | set(self.ledger))
        return {
            "window": {"since": day(self.window.since), "until": day(self.window.until)},
            "differences": self.differences,
            "currencies": {
                cur: {
                    "stripe": self.stripe[cur].as_json(cur),
                    "ledger": self.ledger[cur].as_json(cur),
                    "stripe_by_category": {
                        category: format_plain(net, cur)
                        for category, net in sorted(self.by_category[cur].items())
                    },
                }
                for cur in currencies
            },
            "missing_in_ledger": self.missing_in_ledger,
            "unknown_to_stripe": self.unknown_to_stripe,
            "mismatches": self.mismatches,
            "unsettled": self.unsettled,
            "payouts": self.payouts,
        }


def _entries_for(session: Session, txn_ids: list[str]) -> dict[str, Any]:
    """The ledger's figures for these balance transactions, by id."""
    if not txn_ids:
        return {}
    found = session.execute(
        select(
            JournalEntry.stripe_balance_transaction_id,
            JournalEntry.currency,
            JournalEntry.amount_minor,
            JournalEntry.fee_minor,
            JournalEntry.net_minor,
        ).where(JournalEntry.stripe_balance_transaction_id.in_(txn_ids))
    )
    return {str(row.stripe_balance_transaction_id): row for row in found}


def _post_missing(
    database: Database, lookup: StripeLookup, raw: Json, api_version: str | None
) -> bool:
    """Post a balance transaction the object lists did not bring: a charge's
    fee settles its recognised payment from the listing itself (fees in
    batches: no call per charge), a charge not seen yet is fetched and applied,
    and Stripe's own fees and adjustments are posted directly."""
    txn = mapping.balance_txn(raw)
    if txn.type in PAYMENT_TYPES and txn.source and txn.source.startswith(("ch_", "py_")):
        with database.session() as session, session.begin():
            recognised = session.scalars(
                select(JournalEntry).where(JournalEntry.key == f"charge:{txn.source}")
            ).first()
            if recognised is not None:
                return ledger.settle(
                    session,
                    txn,
                    object_id=txn.source,
                    object_currency=recognised.currency,
                    object_amount_minor=recognised.amount_minor,
                    charge_id=txn.source,
                    donor_id=recognised.donor_id,
                )
        charge = lookup.retrieve_charge(txn.source)
        charge["balance_transaction"] = raw  # expanded: no second call for the fee
        apply_object(
            database, lookup, synthetic_event("charge.updated", charge, api_version=api_version)
        )
        return True
    with database.session() as session, session.begin():
        return ledger.post_other_balance_transaction(session, txn)


def _compare_page(report: Report, entries: dict[str, Any], txns: list[ledger.BalanceTxn]) -> None:
    for txn in txns:
        report.stripe[txn.currency].add(
            txn_kind(txn), txn.amount_minor, txn.fee_minor, txn.net_minor
        )
        report.by_category[txn.currency][txn.reporting_category or txn.type] += txn.net_minor
        entry = entries.get(txn.id)
        if entry is None:
            report.missing_in_ledger.append(
                {
                    "balance_transaction": txn.id,
                    "type": txn.type,
                    "source": txn.source,
                    "currency": txn.currency,
                    "amount": format_plain(txn.amount_minor, txn.currency),
                    "fee": format_plain(txn.fee_minor, txn.currency),
                }
            )
            continue
        stripe_id = txn.source or txn.id
        if entry.currency != txn.currency:
            report.mismatches.append(
                {
                    "stripe_id": stripe_id,
                    "field": "currency",
                    "stripe": txn.currency,
                    "ledger": entry.currency,
                }
            )
            continue
        for name, theirs, ours in (
            ("amount", txn.amount_minor, entry.amount_minor),
            ("fee", txn.fee_minor, entry.fee_minor),
            ("net", txn.net_minor, entry.net_minor),
        ):
            if ours is None or theirs != ours:
                report.mismatches.append(
                    {
                        "stripe_id": stripe_id,
                        "field": name,
                        "stripe": format_plain(theirs, txn.currency),
                        "ledger": "" if ours is None else format_plain(ours, txn.currency),
                    }
                )


def _ledger_side(report: Report, session: Session, seen: set[str]) -> None:
    """The ledger's entries for balance transactions in the window: totals,
    and those Stripe did not list."""
    query = select(
        JournalEntry.stripe_balance_transaction_id,
        JournalEntry.kind,
        JournalEntry.stripe_object_id,
        JournalEntry.stripe_charge_id,
        JournalEntry.currency,
        JournalEntry.amount_minor,
        JournalEntry.fee_minor,
        JournalEntry.net_minor,
    ).where(JournalEntry.stripe_balance_transaction_id.is_not(None))
    if report.window.since is not None:
        query = query.where(JournalEntry.occurred_at >= report.window.since)
    if report.window.until is not None:
        query = query.where(JournalEntry.occurred_at < report.window.until)
    for txn_id, kind, object_id, charge_id, currency, amount, fee, net in session.execute(
        query.order_by(JournalEntry.occurred_at, JournalEntry.id).execution_options(yield_per=1000)
    ):
        report.ledger[currency].add(
            entry_kind(kind, object_id, charge_id), amount, fee or 0, net or 0
        )
        if txn_id not in seen:
            report.unknown_to_stripe.append(
                {
                    "stripe_id": object_id,
                    "balance_transaction": txn_id,
                    "kind": kind,
                    "currency": currency,
                    "amount": format_plain(amount, currency),
                }
            )


def _unsettled(report: Report, session: Session, now: datetime) -> None:
    """Payments recognised more than a day ago whose balance transaction is
    still unknown."""
    payment = aliased(JournalEntry, name="p")
    settlement = aliased(JournalEntry, name="s")
    query = (
        select(payment.stripe_object_id, payment.occurred_at)
        .outerjoin(
            settlement,
            and_(
                settlement.kind == "settlement",
                settlement.stripe_object_id == payment.stripe_object_id,
            ),
        )
        .where(
            payment.kind.in_(ledger.PAYMENT_KINDS),
            settlement.id.is_(None),
            payment.occurred_at < now - UNSETTLED_AFTER,
        )
        .order_by(payment.occurred_at, payment.stripe_object_id)
    )
    if report.window.since is not None:
        query = query.where(payment.occurred_at >= report.window.since)
    if report.window.until is not None:
        query = query.where(payment.occurred_at < report.window.until)
    for object_id, since in session.execute(query):
        report.unsettled.append(
            {"stripe_id": object_id, "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )


def _payouts(report: Report, pacer: Pacer, database: Database, *, link: bool) -> None:
    params: Json = {}
    created = report.window.created()
    if created:
        params["created"] = created
    for payouts, _after in pacer.each("payouts", params):
        for obj in payouts:
            facts = mapping.payout(obj)
            own = facts.balance_transaction.id if facts.balance_transaction else None
            automatic = bool(obj.get("automatic"))
            count, total, inside = 0, 0, []
            if automatic:
                for txns, _ in pacer.each("balance_transactions", {"payout": facts.id}):
                    for raw in txns:
                        txn = mapping.balance_txn(raw)
                        if txn.id == own or txn.type in PAYOUT_TYPES:
                            continue
                        count += 1
                        total += txn.net_minor
                        inside.append(txn.id)
            if link and inside:
                with database.session() as session, session.begin():
                    link_transactions(session, facts.id, inside)
            arrival = facts.arrival_at
            report.payouts.append(
                {
                    "id": facts.id,
                    "currency": facts.currency,
                    "amount": format_plain(facts.amount_minor, facts.currency),
                    "arrival_date": arrival.date().isoformat() if arrival else None,
                    "automatic": automatic,
                    "transactions": count if automatic else None,
                    "sum_net": format_plain(total, facts.currency) if automatic else None,
                    "ties_out": (total == facts.amount_minor) if automatic else None,
                    "note": None
                    if automatic
                    else "a manual payout: Stripe cannot list the transactions inside it",
                }
            )


def reconcile(
    database: Database,
    pacer: Pacer,
    lookup: StripeLookup,
    window: Window,
    *,
    post: bool,
    api_version: str | None,
    progress: Callable[[str, int], None] = lambda resource, count: None,
) -> Report:
    """List the window's balance transactions (posting what no object list
    posted when `post`), compare them with the ledger, and tie out payouts."""
    report = Report(window)
    seen: set[str] = set()
    params: Json = {}
    created = window.created()
    if created:
        params["created"] = created
    count = 0
    for objects, _after in pacer.each("balance_transactions", params):
        txns = [mapping.balance_txn(obj) for obj in objects]
        ids = [t.id for t in txns]
        with database.session() as session:
            entries = _entries_for(session, ids)
        missing = [raw for raw, t in zip(objects, txns, strict=True) if t.id not in entries]
        if post and missing:  # read again only when this page had something to post
            for raw in missing:
                if _post_missing(database, lookup, raw, api_version):
                    report.posted += 1
            with database.session() as session:
                entries = _entries_for(session, ids)
        _compare_page(report, entries, txns)
        seen.update(t.id for t in txns)
        count += len(txns)
        progress("balance_transactions", count)
    with database.session() as session:
        _ledger_side(report, session, seen)
        _unsettled(report, session, utcnow())
    _payouts(report, pacer, database, link=post)
    return report


def day_window(since: date | None, until: date | None, zone: Any) -> Window:
    """Days in the reporting zone as a UTC window."""

    def start(day: date | None) -> datetime | None:
        if day is None:
            return None
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)

    return Window(start(since), start(until))
