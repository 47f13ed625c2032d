"""Invoices and invoice payments: which subscription an invoice bills and
which payment paid it. Money is never counted from an invoice (its
`amount_paid` includes payments outside Stripe): the charge behind it is
recognised once, by its own key, whichever event names it first.

`invoice.paid`, `invoice.payment_succeeded` (the signal under old versions),
`invoice_payment.paid` and a payment intent with `invoice` set all lead to
the same charge key, so a payment is counted once."""

from __future__ import annotations

from app import receipts
from app.db import rows_by
from app.ledger.records import Invoice, Payment, get_or_insert, membership_by_subscription
from webhooks import mapping
from webhooks.handlers.charges import fill_subscription, link_invoice
from webhooks.handlers.common import Context, resolve_donor


def handle_invoice(ctx: Context) -> None:
    """invoice.paid / invoice.payment_succeeded / invoice.payment_failed."""
    session = ctx.session
    facts = mapping.invoice(ctx.object)
    record = get_or_insert(
        session,
        Invoice,
        "stripe_invoice_id",
        facts.id,
        stripe_subscription_id=facts.subscription_id,
        stripe_customer_id=facts.customer_id,
        status=facts.status,
        billing_reason=facts.billing_reason,
    )
    record.stripe_subscription_id = record.stripe_subscription_id or facts.subscription_id
    record.stripe_customer_id = record.stripe_customer_id or facts.customer_id
    if record.status != "paid" and facts.status:
        record.status = facts.status
    if ctx.type == "invoice.payment_failed" and record.stripe_subscription_id:
        receipts.queue_payment_failed(session, invoice_id=facts.id)
    if facts.old_shape and (facts.charge_id or facts.payment_intent_id):
        link_invoice(
            ctx,
            facts.id,
            payment_intent_id=facts.payment_intent_id,
            charge_id=facts.charge_id if not facts.payment_intent_id else None,
            subscription_id=facts.subscription_id,
        )
        if facts.payment_intent_id and facts.charge_id:
            link_invoice(
                ctx, facts.id, charge_id=facts.charge_id, subscription_id=facts.subscription_id
            )
    for payment in rows_by(session, Payment, "stripe_invoice_id", facts.id):
        fill_subscription(ctx, payment, facts.subscription_id)
    if facts.subscription_id:
        membership = membership_by_subscription(session, facts.subscription_id)
        if membership is not None and membership.donor_id is None:
            donor = resolve_donor(
                ctx,
                checkout_id=facts.checkout_id or membership.checkout_id,
                customer_id=facts.customer_id,
                email=facts.email,
                name=facts.name,
                allow_lookup=False,
            )
            membership.donor_id = donor.id if donor else None


def handle_invoice_payment(ctx: Context) -> None:
    """invoice_payment.paid: which payment intent (or charge) paid an invoice."""
    facts = mapping.invoice_payment(ctx.object)
    if facts.payment_intent_id or facts.charge_id:
        link_invoice(
            ctx,
            facts.invoice_id,
            payment_intent_id=facts.payment_intent_id,
            charge_id=facts.charge_id,
        )


HANDLERS = {
    "invoice.paid": handle_invoice,
    "invoice.payment_succeeded": handle_invoice,
    "invoice.payment_failed": handle_invoice,
    "invoice_payment.paid": handle_invoice_payment,
}
