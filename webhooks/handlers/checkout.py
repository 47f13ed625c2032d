"""Checkout sessions: the reader's checkout record becomes complete or
expired, learns the Stripe customer (attached to the donor), and the payment
or membership it led to learns its checkout (so attribution joins in, in
whatever order the events come). Money is posted from charges, not here."""

from __future__ import annotations

from app.db import first_by, rows_by
from app.donate.models import Checkout
from app.donors import attach_customer
from app.ledger.records import Membership, Payment
from webhooks import mapping
from webhooks.handlers.charges import fill_subscription
from webhooks.handlers.common import Context


def _link(ctx: Context, facts: mapping.CheckoutFacts, checkout: Checkout | None) -> None:
    session = ctx.session
    checkout_id = checkout.id if checkout is not None else facts.checkout_id
    if not checkout_id:
        return
    if facts.payment_intent_id:
        for payment in rows_by(
            session, Payment, "stripe_payment_intent_id", facts.payment_intent_id
        ):
            if payment.checkout_id is None:
                payment.checkout_id = checkout_id
            if payment.donor_id is None and checkout is not None:
                payment.donor_id = checkout.donor_id
            fill_subscription(ctx, payment)
    if facts.subscription_id:
        for membership in rows_by(
            session, Membership, "stripe_subscription_id", facts.subscription_id
        ):
            if membership.checkout_id is None:
                membership.checkout_id = checkout_id
            if membership.donor_id is None and checkout is not None:
                membership.donor_id = checkout.donor_id


def _our_checkout(ctx: Context, facts: mapping.CheckoutFacts) -> Checkout | None:
    """Our checkout record, by the session's id or else by the id we gave it
    (Core SELECTs built once on PostgreSQL: `app.db.first_by`)."""
    checkout: Checkout | None = first_by(
        ctx.session, Checkout, "stripe_checkout_session_id", facts.id
    )
    if checkout is None and facts.checkout_id:
        checkout = first_by(ctx.session, Checkout, "id", facts.checkout_id)
    return checkout


def handle_checkout_completed(ctx: Context) -> None:
    """checkout.session.completed (paid, or unpaid while a bank debit is
    processing) and checkout.session.async_payment_succeeded / _failed."""
    facts = mapping.checkout_session(ctx.object)
    checkout = _our_checkout(ctx, facts)
    if checkout is not None:
        if checkout.status != "complete":
            checkout.status = "complete"
            checkout.completed_at = ctx.created
        if facts.customer_id:
            checkout.stripe_customer_id = checkout.stripe_customer_id or facts.customer_id
            attach_customer(ctx.session, checkout.donor, facts.customer_id, livemode=ctx.livemode)
    _link(ctx, facts, checkout)


def handle_checkout_expired(ctx: Context) -> None:
    facts = mapping.checkout_session(ctx.object)
    checkout = _our_checkout(ctx, facts)
    if checkout is not None and checkout.status == "open":
        checkout.status = "expired"


HANDLERS = {
    "checkout.session.completed": handle_checkout_completed,
    "checkout.session.async_payment_succeeded": handle_checkout_completed,
    "checkout.session.async_payment_failed": handle_checkout_completed,
    "checkout.session.expired": handle_checkout_expired,
}
