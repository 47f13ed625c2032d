"""Disputes: every balance transaction of a dispute (the withdrawal with its
dispute fee, a reinstatement) is one movement, keyed by its id; the dispute's
record keeps its status, reason and outcome, never going back to an older
event's state. Inquiries move no money and post nothing."""

from __future__ import annotations

from app import ledger
from app.ledger.records import Dispute, get_or_insert, payment_by_charge
from webhooks import mapping
from webhooks.handlers.common import Context


def handle_dispute(ctx: Context) -> None:
    """charge.dispute.created / updated / funds_withdrawn / funds_reinstated /
    closed: the dispute object lists its balance transactions in full."""
    session = ctx.session
    facts = mapping.dispute(ctx.object)
    record = get_or_insert(
        session,
        Dispute,
        "stripe_dispute_id",
        facts.id,
        lock=True,
        stripe_charge_id=facts.charge_id,
        amount_minor=facts.amount_minor,
        currency=facts.currency,
        status=facts.status,
        reason=facts.reason,
        outcome=facts.outcome,
        last_event_created_at=ctx.created,
        stripe_created_at=facts.created_at,
    )
    # A closed dispute's outcome is final; otherwise the newest event wins.
    if record.outcome is None and (
        facts.outcome is not None
        or record.last_event_created_at is None
        or ctx.created >= record.last_event_created_at
    ):
        record.status = facts.status
        record.reason = facts.reason
        record.outcome = facts.outcome
        record.last_event_created_at = ctx.created
    payment = payment_by_charge(session, facts.charge_id) if facts.charge_id else None
    if payment is not None:
        payment.status = "disputed"
    for txn in facts.balance_transactions:
        ledger.post_movement(
            session,
            txn,
            mapping.dispute_kind(txn),
            object_id=facts.id,
            charge_id=facts.charge_id,
            donor_id=payment.donor_id if payment else None,
        )


HANDLERS = {
    "charge.dispute.created": handle_dispute,
    "charge.dispute.updated": handle_dispute,
    "charge.dispute.funds_withdrawn": handle_dispute,
    "charge.dispute.funds_reinstated": handle_dispute,
    "charge.dispute.closed": handle_dispute,
}
