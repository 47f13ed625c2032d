"""The reconcile report (CONTRACT.md, "Reconcile report JSON"): Stripe's
balance transactions in a window beside the ledger's entries for them, per
currency; what one side has and the other lacks; amount and fee mismatches;
charges left unsettled for more than a day; and per payout whether the
transactions inside it sum to it. `reconcile` streams Stripe's listing into
app.reconcile.compare (bulk comparison) and, with `post`, posts what the
ledger lacks page by page on the way (`post_missing`). No Flask, no `stripe`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from app import ledger
from app.clock import utcnow
from app.db import Database
from app.ledger import JournalEntry
from app.money import format_plain
from app.payments import StripeLookup, Webhooks
from app.reconcile.compare import (
    PAYMENT_TYPES,
    PAYOUT_TYPES,
    STAGE_BATCH,
    Report,
    compare_staged,
    stage_row,
    stage_rows,
    staging,
    unsettled,
)
from app.reconcile.pages import apply_object
from app.reconcile.payouts import link_transactions
from app.reconcile.sync import ListUnreadable, Pacer, Window, prefetched, synthetic_event

Json = dict[str, Any]
REFUND_TYPES = frozenset(["refund", "payment_refund"])
REFUND_FAILURE_TYPES = frozenset(["refund_failure", "payment_failure_refund"])
REFUND_PREFIXES = ("re_", "pyr_")

__all__ = ["Report", "day_window", "post_missing", "reconcile"]

# -- posting what the ledger lacks (sync, not --report-only) --------------------


def known_ids(database: Database, txn_ids: list[str]) -> set[str]:
    """Which of these balance transactions the ledger holds (one query a page)."""
    with database.session(immediate=False) as session:
        return set(
            session.scalars(
                select(JournalEntry.stripe_balance_transaction_id).where(
                    JournalEntry.stripe_balance_transaction_id.in_(txn_ids)
                )
            )
        )


def post_missing(
    database: Database,
    hooks: Webhooks,
    lookup: StripeLookup,
    raw: Json,
    api_version: str | None,
) -> bool:
    """Post a balance transaction the object lists did not bring, through the
    handlers' own code where an object is behind it: a charge's fee settles
    its recognised payment from the listing itself (fees in batches: no call
    per charge), a charge not seen yet is fetched and applied, a refund (or
    its failure) the refund list missed is fetched and applied with the
    listing's figures, and Stripe's own fees and adjustments are posted
    directly. Disputes come from their own list only."""
    txn = hooks.balance_txn(raw)
    source = txn.source or ""
    if txn.type in PAYMENT_TYPES and source.startswith(("ch_", "py_")):
        with database.session() as session, session.begin():
            recognised = session.scalars(
                select(JournalEntry).where(JournalEntry.key == f"charge:{source}")
            ).first()
            if recognised is not None:
                return ledger.settle(
                    session,
                    txn,
                    object_id=source,
                    object_currency=recognised.currency,
                    object_amount_minor=recognised.amount_minor,
                    charge_id=source,
                    donor_id=recognised.donor_id,
                )
        charge = lookup.retrieve_charge(source)
        charge["balance_transaction"] = raw  # expanded: no second call for the fee
        event = synthetic_event("charge.updated", charge, api_version=api_version)
        apply_object(database, hooks, lookup, event)
        return True
    if source.startswith(REFUND_PREFIXES) and txn.type in REFUND_TYPES | REFUND_FAILURE_TYPES:
        refund = lookup.retrieve_refund(source)
        slot = "balance_transaction" if txn.type in REFUND_TYPES else "failure_balance_transaction"
        refund[slot] = raw  # the listing's own figures: no call for them
        event = synthetic_event("refund.updated", refund, api_version=api_version)
        apply_object(database, hooks, lookup, event)
        return True
    with database.session() as session, session.begin():
        return ledger.post_other_balance_transaction(session, txn)


def _payout_row(obj: Json, automatic: bool, count: int, total: int) -> Json:
    currency = str(obj["currency"]).lower()
    amount = int(obj["amount"])
    arrival = obj.get("arrival_date")
    return {
        "id": obj["id"],
        "currency": currency,
        "amount": format_plain(amount, currency),
        "arrival_date": datetime.fromtimestamp(int(arrival), UTC).date().isoformat()
        if arrival
        else None,
        "automatic": automatic,
        "transactions": count if automatic else None,
        "sum_net": format_plain(total, currency) if automatic else None,
        "ties_out": (total == amount) if automatic else None,
        "note": None
        if automatic
        else "a manual payout: Stripe cannot list the transactions inside it",
    }


def _payouts(
    report: Report, pacer: Pacer, hooks: Webhooks, database: Database, *, link: bool
) -> None:
    params: Json = {}
    created = report.window.created()
    if created:
        params["created"] = created
    try:
        for payouts, _after in pacer.each("payouts", params):
            for obj in payouts:
                _payout(report, pacer, hooks, database, obj, link=link)
    except ListUnreadable as exc:
        report.unlisted.append({"list": "payouts", "reason": exc.reason})


def _payout(
    report: Report, pacer: Pacer, hooks: Webhooks, database: Database, obj: Json, *, link: bool
) -> None:
    """One payout's row; an automatic one's transactions listed and linked."""
    own = obj.get("balance_transaction")
    own_id = own.get("id") if isinstance(own, dict) else own
    automatic = bool(obj.get("automatic"))
    count, total, inside = 0, 0, []
    if automatic:
        for txns, _ in pacer.each("balance_transactions", {"payout": obj["id"]}):
            for raw in txns:
                txn = hooks.balance_txn(raw)
                if txn.id == own_id or txn.type in PAYOUT_TYPES:
                    continue
                count += 1
                total += txn.net_minor
                inside.append(txn.id)
    if link and inside:
        with database.session() as session, session.begin():
            link_transactions(session, str(obj["id"]), inside)
    report.payouts.append(_payout_row(obj, automatic, count, total))


def reconcile(
    database: Database,
    pacer: Pacer,
    hooks: Webhooks,
    lookup: StripeLookup,
    window: Window,
    *,
    post: bool,
    api_version: str | None,
    progress: Callable[[str, int], None] = lambda resource, count: None,
) -> Report:
    """List the window's balance transactions (posting what the ledger lacks
    when `post`), compare them with the ledger, and tie out payouts."""
    report = Report(window)
    params: Json = {}
    created = window.created()
    if created:
        params["created"] = created
    with staging(database) as conn:
        batch: list[tuple[Any, ...]] = []
        for objects, _after in prefetched(pacer.each("balance_transactions", params)):
            txns = [hooks.balance_txn(obj) for obj in objects]
            if post and txns:
                known = known_ids(database, [t.id for t in txns])
                for raw, txn in zip(objects, txns, strict=True):
                    if txn.id not in known and post_missing(
                        database, hooks, lookup, raw, api_version
                    ):
                        report.posted += 1
            batch.extend(stage_row(report.listed + i, t) for i, t in enumerate(txns))
            if len(batch) >= STAGE_BATCH:
                stage_rows(conn, batch)
                batch = []
            report.listed += len(txns)
            progress("balance_transactions", report.listed)
        stage_rows(conn, batch)
        compare_staged(report, conn)
    with database.session(immediate=False) as session:
        unsettled(report, session, utcnow())
    _payouts(report, pacer, hooks, database, link=post)
    return report


def day_window(since: date | None, until: date | None, zone: Any) -> Window:
    """Days in the reporting zone as a UTC window."""

    def start(day: date | None) -> datetime | None:
        if day is None:
            return None
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)

    return Window(start(since), start(until))
