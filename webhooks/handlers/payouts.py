"""Payouts: the payout's balance transaction (money to the bank) once, and
when it fails the failure balance transaction (money back) once. When Stripe
says a payout's transactions can be listed, the ones no other event posts
(Stripe's own fees, adjustments) are posted from that listing."""

from __future__ import annotations

from app import ledger
from app.ledger.records import Payout, get_or_insert
from webhooks import mapping
from webhooks.handlers.common import Context
from webhooks.mapping import TxnRef

_PROGRESS = {"pending": 0, "in_transit": 1, "paid": 2, "canceled": 3, "failed": 3}


def _post(ctx: Context, ref: TxnRef | None, kind: str, payout_id: str) -> None:
    if ref is None or ledger.entry_exists(ctx.session, f"balance_transaction:{ref.id}"):
        return
    txn = ref.expanded or mapping.balance_txn(ctx.stripe.retrieve_balance_transaction(ref.id))
    ledger.post_movement(ctx.session, txn, kind, object_id=payout_id)


def handle_payout(ctx: Context) -> None:
    """payout.paid / payout.failed (and payout.canceled): a failed payout had
    left the balance first, so both of its transactions are posted."""
    facts = mapping.payout(ctx.object)
    record = get_or_insert(
        ctx.session,
        Payout,
        "stripe_payout_id",
        facts.id,
        lock=True,
        amount_minor=facts.amount_minor,
        currency=facts.currency,
        status=facts.status,
        arrival_at=facts.arrival_at,
        stripe_created_at=facts.created_at,
    )
    if _PROGRESS.get(facts.status, 0) > _PROGRESS.get(record.status, 0):
        record.status = facts.status
    record.arrival_at = facts.arrival_at or record.arrival_at
    if facts.status in ("paid", "failed", "canceled", "in_transit"):
        _post(ctx, facts.balance_transaction, "payout", facts.id)
    _post(ctx, facts.failure_balance_transaction, "payout_failure", facts.id)


def handle_payout_reconciliation_completed(ctx: Context) -> None:
    """The payout's balance transactions can be listed now: post the ones no
    object event posts (stripe_fee, adjustments, ...). One paged call."""
    facts = mapping.payout(ctx.object)
    for obj in ctx.stripe.list_balance_transactions(payout=facts.id):
        txn = mapping.balance_txn(obj)
        if not ledger.entry_exists(ctx.session, f"balance_transaction:{txn.id}"):
            ledger.post_other_balance_transaction(ctx.session, txn)


HANDLERS = {
    "payout.paid": handle_payout,
    "payout.failed": handle_payout,
    "payout.canceled": handle_payout,
    "payout.reconciliation_completed": handle_payout_reconciliation_completed,
}
