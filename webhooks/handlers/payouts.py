"""Payouts: the payout's balance transaction (money to the bank) once, and
when it fails the failure balance transaction (money back) once. When Stripe
says a payout's transactions can be listed, the ones no other event posts
(Stripe's own fees, adjustments) are posted from that listing, and a refund
(or refund failure) no event told us of posts as its refund object, through
the same code as refund events."""

from __future__ import annotations

from dataclasses import replace

from app import ledger
from app.ledger.records import Payout, get_or_insert
from app.reconcile.payouts import link_transactions
from webhooks import mapping
from webhooks.handlers.common import Context
from webhooks.handlers.refunds import record_refund
from webhooks.mapping import TxnRef

# Balance transaction types a refund object is behind (`source` is the re_...
# or, for a refund of a non-card payment, the pyr_...).
REFUND_TYPES = frozenset(["refund", "payment_refund"])
REFUND_FAILURE_TYPES = frozenset(["refund_failure", "payment_failure_refund"])
REFUND_ID_PREFIXES = ("re_", "pyr_")

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
    object event posts (stripe_fee, adjustments, ...), and remember which
    ones the payout holds (its page in the finance area). One paged call."""
    facts = mapping.payout(ctx.object)
    own = facts.balance_transaction.id if facts.balance_transaction else None
    inside: list[str] = []
    for obj in ctx.stripe.list_balance_transactions(payout=facts.id):
        txn = mapping.balance_txn(obj)
        if txn.id != own and txn.type not in ("payout", "payout_cancel", "payout_failure"):
            inside.append(txn.id)
        if ledger.entry_exists(ctx.session, f"balance_transaction:{txn.id}"):
            continue
        refund_source = (txn.source or "").startswith(REFUND_ID_PREFIXES)
        if refund_source and txn.type in REFUND_TYPES | REFUND_FAILURE_TYPES:
            _post_refund(ctx, txn)
        else:
            ledger.post_other_balance_transaction(ctx.session, txn)
    link_transactions(ctx.session, facts.id, inside)


def _post_refund(ctx: Context, txn: ledger.BalanceTxn) -> None:
    """A refund's balance transaction (or its failure's) seen in a payout:
    the refund object (one fetch) posts it, with the listing's figures."""
    assert txn.source is not None
    refund = mapping.refund(ctx.stripe.retrieve_refund(txn.source))
    known = TxnRef(txn.id, txn)
    if refund.balance_transaction is not None and refund.balance_transaction.id == txn.id:
        refund = replace(refund, balance_transaction=known)
    failure = refund.failure_balance_transaction
    if failure is not None and failure.id == txn.id:
        refund = replace(refund, failure_balance_transaction=known)
    record_refund(ctx, refund)


HANDLERS = {
    "payout.paid": handle_payout,
    "payout.failed": handle_payout,
    "payout.canceled": handle_payout,
    "payout.reconciliation_completed": handle_payout_reconciliation_completed,
}
