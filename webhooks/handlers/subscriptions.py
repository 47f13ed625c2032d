"""Subscriptions: the membership record follows the newest event only (an
older event never takes its state back; on a tie, Stripe's current
subscription decides). Memberships move no money: their invoices' charges
do."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.db import execute_prepared, update_record
from app.ledger.records import Membership, Payment, get_or_insert
from webhooks import mapping
from webhooks.handlers.common import Context, known_donor


def handle_subscription(ctx: Context) -> None:
    """customer.subscription.created / updated / deleted (paused, resumed)."""
    session = ctx.session
    facts = mapping.subscription(ctx.object)
    record: Membership = get_or_insert(
        session,
        Membership,
        "stripe_subscription_id",
        facts.id,
        lock=True,
        status=facts.status,
        stripe_customer_id=facts.customer_id,
        checkout_id=facts.checkout_id,
        livemode=facts.livemode,
        last_event_created_at=None,
    )
    last = record.last_event_created_at
    if record.last_stripe_event_id == ctx.event["id"]:
        return  # the same event again
    if last is not None and ctx.created < last:
        return
    if last is not None and ctx.created == last:
        # Two events in the same second: their order is unknown, so ask Stripe.
        facts = mapping.subscription(ctx.stripe.retrieve_subscription(facts.id))
    customer_id = record.stripe_customer_id or facts.customer_id
    checkout_id = record.checkout_id or facts.checkout_id
    values: dict[str, object] = {
        "status": facts.status,
        "amount_minor": (
            facts.amount_minor if facts.amount_minor is not None else record.amount_minor
        ),
        "currency": facts.currency or record.currency,
        "interval": facts.interval or record.interval,
        "current_period_end": facts.current_period_end or record.current_period_end,
        "cancel_at_period_end": facts.cancel_at_period_end,
        "canceled_at": facts.canceled_at,
        "ended_at": facts.ended_at,
        "last_event_created_at": ctx.created,
        "last_stripe_event_id": str(ctx.event["id"]),
        "stripe_customer_id": customer_id,
        "checkout_id": checkout_id,
    }
    if record.donor_id is None:
        donor, _ = known_donor(session, checkout_id, customer_id)
        values["donor_id"] = _paying_donor(session, facts.id) if donor is None else donor.id
    # One UPDATE of what changed (app.db.update_record), not the ORM's flush.
    update_record(record, values)


@cache
def _paying_donor_statement() -> Any:
    payments = Payment.__table__
    key = bindparam("subscription_id", type_=payments.c.stripe_subscription_id.type)
    return (
        select(payments.c.donor_id)
        .where(payments.c.stripe_subscription_id == key, payments.c.donor_id.is_not(None))
        .limit(1)
    )


def _paying_donor(session: Session, subscription_id: str) -> int | None:
    """The donor of a payment of this subscription, if any (one prepared
    statement after the autoflush)."""
    session.flush()
    donor_id: int | None = execute_prepared(
        session, _paying_donor_statement(), {"subscription_id": subscription_id}
    ).scalar()
    return donor_id


HANDLERS = {
    "customer.subscription.created": handle_subscription,
    "customer.subscription.updated": handle_subscription,
    "customer.subscription.deleted": handle_subscription,
    "customer.subscription.paused": handle_subscription,
    "customer.subscription.resumed": handle_subscription,
}
