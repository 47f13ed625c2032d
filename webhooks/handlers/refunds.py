"""Refunds: each refund is its own movement (key `refund:{re}`), settled by
its balance transaction; a refund that fails later gives the money back
(`refund_failure`, keyed by its failure balance transaction). A Dashboard
refund is the same as any other: refund.* events carry it, or, where none
are sent (API versions from 2022-11-15 up to 2024-10-28), the charge's
`amount_refunded` says more was refunded than the ledger holds and the
charge's refunds are listed from Stripe; a payout's listing may show one too.

Never computed from a charge's cumulative `amount_refunded`.
"""

from __future__ import annotations

from collections.abc import Iterable

from app import ledger, receipts
from app.ledger.checks import posted_refunds
from app.ledger.records import Refund, get_or_insert, note_amount_refunded, payment_by_charge
from app.ledger.totals import lock_object
from webhooks import mapping
from webhooks.handlers.common import Context
from webhooks.mapping import RefundFacts, TxnRef

# How far a refund has got; its record never goes back to an earlier status.
_PROGRESS = {"requires_action": 0, "pending": 1, "succeeded": 2, "canceled": 3, "failed": 3}


def _fetch(ctx: Context, ref: TxnRef) -> ledger.BalanceTxn:
    return ref.expanded or mapping.balance_txn(ctx.stripe.retrieve_balance_transaction(ref.id))


def record_refund(ctx: Context, facts: RefundFacts) -> None:
    session = ctx.session
    if facts.charge_id:
        # The charge's lock before its payment is read (and, by handle_refund,
        # its refunded figure written): a worker applying an event about the
        # charge at the same time holds it, and what that worker commits is
        # what this one then reads. Charge before refund, as the charge's
        # handler takes them, so the two never wait for each other in turn.
        lock_object(session, facts.charge_id)
    record = get_or_insert(
        session,
        Refund,
        "stripe_refund_id",
        facts.id,
        lock=True,
        stripe_charge_id=facts.charge_id,
        amount_minor=facts.amount_minor,
        currency=facts.currency,
        status=facts.status,
        reason=facts.reason,
        stripe_created_at=facts.created_at,
    )
    if _PROGRESS.get(facts.status, 0) > _PROGRESS.get(record.status, 0):
        record.status = facts.status
    record.reason = record.reason or facts.reason
    payment = payment_by_charge(session, facts.charge_id) if facts.charge_id else None
    donor_id = payment.donor_id if payment else None

    # Money left the balance when the refund was made: its balance
    # transaction exists from then on (also for one that fails later). A
    # refund without one moved nothing: cancelled before that, or the
    # reversal of an authorisation's uncaptured amount (a released hold, the
    # rest of a partial capture), which "succeeds" without any money.
    if facts.balance_transaction is not None:
        posted = ledger.recognise_refund(
            session,
            refund_id=facts.id,
            charge_id=facts.charge_id,
            currency=facts.currency,
            amount_minor=facts.amount_minor,
            occurred_at=facts.created_at,
            donor_id=donor_id,
        )
        if posted and receipts.is_news(facts.created_at, ctx.created):
            receipts.queue_refund_note(session, refund_id=facts.id)
    ref = facts.balance_transaction
    if ref is not None and not ledger.entry_exists(session, f"balance_transaction:{ref.id}"):
        ledger.settle(
            session,
            _fetch(ctx, ref),
            object_id=facts.id,
            object_currency=facts.currency,
            object_amount_minor=-facts.amount_minor,
            charge_id=facts.charge_id,
            donor_id=donor_id,
        )
    failure = facts.failure_balance_transaction
    if failure is not None and not ledger.entry_exists(
        session, f"balance_transaction:{failure.id}"
    ):
        ledger.post_movement(
            session,
            _fetch(ctx, failure),
            "refund_failure",
            object_id=facts.id,
            charge_id=facts.charge_id,
            donor_id=donor_id,
        )


def record_charge_refunds(
    ctx: Context, charge_id: str, refunded_minor: int, listed: Iterable[RefundFacts] = ()
) -> None:
    """The refunds behind a charge's refunded amount (`refunded_minor`, of
    the captured money): those its payload lists (old versions), then, if the
    ledger still holds less than that, every refund Stripe lists for the
    charge (one paged call), each posted once by its id."""
    for refund in listed:
        record_refund(ctx, refund)
    if refunded_minor <= 0 or refunded_minor <= posted_refunds(ctx.session, charge_id):
        return
    for obj in ctx.stripe.list_refunds(charge=charge_id):
        record_refund(ctx, mapping.refund(obj))


def handle_refund(ctx: Context) -> None:
    """refund.created / updated / failed, and the older charge.refund.updated.
    A refund's event newer than the charge's own brings the charge's refunded
    figure up to date (the charge.refunded that says so may still be on its way)."""
    facts = mapping.refund(ctx.object)
    record_refund(ctx, facts)
    payment = payment_by_charge(ctx.session, facts.charge_id) if facts.charge_id else None
    if payment is not None and payment.amount_refunded_minor is not None:
        held = posted_refunds(ctx.session, payment.stripe_charge_id)
        note_amount_refunded(payment, held, ctx.created)


HANDLERS = {
    "refund.created": handle_refund,
    "refund.updated": handle_refund,
    "refund.failed": handle_refund,
    "charge.refund.updated": handle_refund,
}
