"""Charges and payment intents: a successful, captured charge is recognised
once (what was captured, key `charge:{ch}`) and settled once its balance
transaction is known (fee and net, key `balance_transaction:{txn}`),
whichever event brings it. An authorisation never captured posts nothing.

Never derives a refund from `amount_refunded`: refunds post from refund
objects (webhooks.handlers.refunds), listed from Stripe when the charge says
more was refunded than the ledger holds.
"""

from __future__ import annotations

from app import ledger, receipts
from app.db import rows_by, update_record
from app.ledger.records import (
    Invoice,
    InvoicePayment,
    Payment,
    get_or_insert,
    invoice_by_id,
    invoice_link,
    membership_by_subscription,
    note_amount_refunded,
    payment_by_charge,
    payment_for_posting,
)
from webhooks import mapping
from webhooks.handlers.common import Context, resolve_donor
from webhooks.handlers.refunds import record_charge_refunds
from webhooks.mapping import ChargeFacts


def link_invoice(
    ctx: Context,
    invoice_id: str,
    *,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    subscription_id: str | None = None,
) -> None:
    """Remember which invoice a payment intent or charge paid, and tell the
    payment record if it exists already."""
    if payment_intent_id:
        get_or_insert(
            ctx.session,
            InvoicePayment,
            "stripe_payment_intent_id",
            payment_intent_id,
            stripe_invoice_id=invoice_id,
            stripe_charge_id=None,
            stripe_subscription_id=subscription_id,
        )
    elif charge_id:
        get_or_insert(
            ctx.session,
            InvoicePayment,
            "stripe_charge_id",
            charge_id,
            stripe_invoice_id=invoice_id,
            stripe_subscription_id=subscription_id,
        )
    if payment_intent_id:
        payments = rows_by(ctx.session, Payment, "stripe_payment_intent_id", payment_intent_id)
    elif charge_id:
        payments = rows_by(ctx.session, Payment, "stripe_charge_id", charge_id)
    else:
        return
    for payment in payments:
        payment.stripe_invoice_id = payment.stripe_invoice_id or invoice_id
        fill_subscription(ctx, payment, subscription_id)


def fill_subscription(ctx: Context, payment: Payment, subscription_id: str | None = None) -> None:
    """Set the payment's subscription from what is known (the invoice record),
    and the membership's donor from the payment's."""
    if payment.stripe_subscription_id is None:
        if subscription_id is None and payment.stripe_invoice_id:
            invoice = invoice_by_id(ctx.session, payment.stripe_invoice_id)
            subscription_id = invoice.stripe_subscription_id if invoice else None
        if subscription_id is not None:
            update_record(payment, {"stripe_subscription_id": subscription_id})
    if payment.stripe_subscription_id and payment.donor_id:
        membership = membership_by_subscription(ctx.session, payment.stripe_subscription_id)
        if membership is not None and membership.donor_id is None:
            update_record(membership, {"donor_id": payment.donor_id})


def _invoice_kind(
    ctx: Context, invoice_id: str, subscription_id: str | None, *, expanded: bool = False
) -> str:
    """The payment kind of an invoice's charge: "membership" when a
    subscription is behind the invoice, else "once" (a one-off invoice is a
    one-time gift). From the payload when it says (a subscription id, or the
    invoice `expanded` in it), else the invoice's record, else one call for
    the invoice (kept as its record)."""
    if subscription_id or expanded:
        return "membership" if subscription_id else "once"
    record = invoice_by_id(ctx.session, invoice_id)
    if record is None:
        facts = mapping.invoice(ctx.stripe.retrieve_invoice(invoice_id))
        record = get_or_insert(
            ctx.session,
            Invoice,
            "stripe_invoice_id",
            invoice_id,
            stripe_subscription_id=facts.subscription_id,
            stripe_customer_id=facts.customer_id,
            status=facts.status,
            billing_reason=facts.billing_reason,
        )
    return "membership" if record.stripe_subscription_id else "once"


def _payment_kind(
    ctx: Context, facts: ChargeFacts
) -> tuple[str, str | None, tuple[str | None, str | None]]:
    """Whether a charge paid a subscription's invoice ("membership") or not
    ("once"), which invoice it paid, and the invoice's customer email and
    name when Stripe was asked (Nones otherwise): the invoice from the payload when it
    says (old versions, our form's metadata), from what earlier events told
    us, and only then from Stripe (one call: the invoice payments of its
    payment intent, the invoice expanded); then whether a subscription is
    behind that invoice. The email finds the donor of a renewal whose charge
    names none, instead of a second call for the customer."""
    if facts.invoice_known:
        if not facts.invoice_id:
            return "once", None, (None, None)
        kind = _invoice_kind(
            ctx, facts.invoice_id, facts.invoice_subscription_id, expanded=facts.invoice_expanded
        )
        return kind, facts.invoice_id, (None, None)
    if facts.frequency == "once":
        return "once", None, (None, None)
    link = invoice_link(ctx.session, payment_intent_id=facts.payment_intent_id, charge_id=facts.id)
    if link is not None:
        kind = _invoice_kind(ctx, link.stripe_invoice_id, link.stripe_subscription_id)
        return kind, link.stripe_invoice_id, (None, None)
    if not facts.payment_intent_id:
        return "once", None, (None, None)
    for found in ctx.stripe.list_invoice_payments(payment_intent=facts.payment_intent_id):
        invoice = found.get("invoice")
        invoice_id = mapping.object_id(invoice)
        if invoice_id:
            link_invoice(ctx, invoice_id, payment_intent_id=facts.payment_intent_id)
            if isinstance(invoice, dict):
                subscription_id = mapping.invoice_subscription(invoice)
                kind = _invoice_kind(ctx, invoice_id, subscription_id, expanded=True)
                return (
                    kind,
                    invoice_id,
                    (invoice.get("customer_email"), invoice.get("customer_name")),
                )
            return _invoice_kind(ctx, invoice_id, None), invoice_id, (None, None)
    return "once", None, (None, None)


def record_charge(
    ctx: Context, facts: ChargeFacts, *, checkout_id: str | None = None
) -> Payment | None:
    """A charge seen in any event: recognise it if it succeeded and was
    captured, keep its record, and settle it if its balance transaction is
    known. Returns its record (None for a charge never recognisable)."""
    session = ctx.session
    ref = facts.balance_transaction
    charge_key = f"charge:{facts.id}"
    settle_key = f"balance_transaction:{ref.id}" if ref is not None else None
    payment, posted = payment_for_posting(session, facts.id, (charge_key, settle_key))
    if not facts.recognisable:
        if payment is None:
            return None
        # A bank debit that failed after all: the record says so; nothing
        # was recognised for it (recognition waits for success).
        if facts.status == "failed":
            payment.status = "failed"
        return payment
    checkout_id = facts.checkout_id or checkout_id
    if payment is None:
        kind, invoice_id, (invoice_email, invoice_name) = _payment_kind(ctx, facts)
        donor = resolve_donor(
            ctx,
            checkout_id=checkout_id,
            customer_id=facts.customer_id,
            email=facts.email or invoice_email,
            name=facts.name or (invoice_name if not facts.email else None),
            allow_lookup=True,
        )
        payment = get_or_insert(
            session,
            Payment,
            "stripe_charge_id",
            facts.id,
            stripe_payment_intent_id=facts.payment_intent_id,
            stripe_invoice_id=invoice_id,
            stripe_customer_id=facts.customer_id,
            donor_id=donor.id if donor else None,
            checkout_id=checkout_id,
            kind=kind,
            amount_minor=facts.amount_minor,
            currency=facts.currency,
            status="succeeded",
            livemode=facts.livemode,
            stripe_created_at=facts.created_at,
            # What `refund_charge` notes next for every caller (a recognisable
            # charge): written with the row rather than updated after it.
            amount_refunded_minor=facts.amount_refunded_minor,
            amount_refunded_at=ctx.created,
        )
    fill_payment(ctx, payment, facts, checkout_id=checkout_id)
    if (
        charge_key not in posted
        and ledger.recognise_payment(
            session,
            charge_id=facts.id,
            kind="donation" if payment.kind == "once" else "membership_payment",
            currency=facts.currency,
            amount_minor=facts.amount_minor,
            occurred_at=facts.created_at,
            donor_id=payment.donor_id,
        )
        and receipts.is_news(facts.created_at, ctx.created)
    ):
        receipts.queue_receipt(session, charge_id=facts.id)
    if settle_key not in posted:
        settle_charge(ctx, facts, payment)
    return payment


def fill_payment(
    ctx: Context, payment: Payment, facts: ChargeFacts, *, checkout_id: str | None
) -> None:
    """Fill what the record lacks from this payload (never overwrite). Only
    what changes is set: a set attribute, even to its value, makes the next
    flush compare the record."""
    if payment.stripe_payment_intent_id is None and facts.payment_intent_id:
        payment.stripe_payment_intent_id = facts.payment_intent_id
    if payment.stripe_customer_id is None and facts.customer_id:
        payment.stripe_customer_id = facts.customer_id
    if payment.checkout_id is None and checkout_id:
        payment.checkout_id = checkout_id
    if payment.kind == "membership" and payment.stripe_invoice_id is None:
        link = invoice_link(
            ctx.session, payment_intent_id=payment.stripe_payment_intent_id, charge_id=facts.id
        )
        invoice_id = facts.invoice_id or (link.stripe_invoice_id if link else None)
        if invoice_id is not None:
            payment.stripe_invoice_id = invoice_id
    if payment.donor_id is None:
        donor = resolve_donor(
            ctx,
            checkout_id=payment.checkout_id,
            customer_id=facts.customer_id,
            email=facts.email,
            name=facts.name,
            allow_lookup=False,
        )
        if donor is not None:
            update_record(payment, {"donor_id": donor.id})
    fill_subscription(ctx, payment)


def settle_charge(ctx: Context, facts: ChargeFacts, payment: Payment) -> None:
    """Settle the charge from its balance transaction, when known: its figures
    from the payload when expanded, else one retrieve. The caller read, in
    this transaction, that it was not posted (`payment_for_posting`)."""
    ref = facts.balance_transaction
    if ref is None:
        return
    txn = ref.expanded or mapping.balance_txn(ctx.stripe.retrieve_balance_transaction(ref.id))
    ledger.settle(
        ctx.session,
        txn,
        object_id=facts.id,
        object_currency=facts.currency,
        object_amount_minor=facts.amount_minor,
        charge_id=facts.id,
        donor_id=payment.donor_id,
    )


def handle_charge(ctx: Context) -> None:
    """charge.succeeded, charge.updated, charge.captured, charge.failed,
    charge.refunded: the charge object carries all a payment needs. Since
    2024-04-10 its balance transaction is usually null at charge.succeeded and
    arrives with a charge.updated (previous_attributes.balance_transaction);
    whichever event first carries it settles the fee (one fetch, unless
    expanded), later ones find the key posted and call nothing."""
    facts = mapping.charge(ctx.object)
    payment = record_charge(ctx, facts)
    if payment is not None and facts.recognisable:
        if facts.disputed:
            payment.status = "disputed"
        elif facts.refunded:
            payment.status = "refunded"
        elif facts.amount_refunded_minor > 0 and payment.status == "succeeded":
            # Status only: refunds are posted from refund objects.
            payment.status = "partially_refunded"
        refund_charge(ctx, payment, facts)


def refund_charge(ctx: Context, payment: Payment, facts: ChargeFacts) -> None:
    """Keep what the charge says was refunded (the newest event's figure) and
    post the refunds behind it, each from its refund object."""
    note_amount_refunded(payment, facts.amount_refunded_minor, ctx.created)
    record_charge_refunds(ctx, facts.id, facts.amount_refunded_minor, facts.refunds)


def handle_payment_intent(ctx: Context) -> None:
    """payment_intent.succeeded / payment_failed. Old versions carry the
    charges (and `invoice`): those are recorded like charge events. New
    versions carry only the latest charge's id: the intent then fills in our
    checkout and, for our one-time form, the record's kind; recognition waits
    for the charge's own event (it has the charge's time and details)."""
    facts = mapping.payment_intent(ctx.object)
    if facts.invoice_known and facts.invoice_id:
        link_invoice(ctx, facts.invoice_id, payment_intent_id=facts.id)
    for charge in facts.charges:
        listed = record_charge(ctx, charge, checkout_id=facts.checkout_id)
        if listed is not None and charge.recognisable:
            refund_charge(ctx, listed, charge)
    if facts.status != "succeeded" or not facts.latest_charge_id or facts.charges:
        return
    payment = payment_by_charge(ctx.session, facts.latest_charge_id)
    if payment is None and (facts.frequency == "once" or facts.invoice_known):
        donor = resolve_donor(
            ctx,
            checkout_id=facts.checkout_id,
            customer_id=facts.customer_id,
            email=facts.email,
            name=None,
            allow_lookup=False,
        )
        payment = get_or_insert(
            ctx.session,
            Payment,
            "stripe_charge_id",
            facts.latest_charge_id,
            stripe_payment_intent_id=facts.id,
            stripe_invoice_id=facts.invoice_id,
            stripe_customer_id=facts.customer_id,
            donor_id=donor.id if donor else None,
            checkout_id=facts.checkout_id,
            kind=(
                _invoice_kind(
                    ctx,
                    facts.invoice_id,
                    facts.invoice_subscription_id,
                    expanded=facts.invoice_expanded,
                )
                if facts.invoice_id
                else "once"
            ),
            amount_minor=facts.amount_received,
            currency=facts.currency,
            status="succeeded",
            livemode=facts.livemode,
            stripe_created_at=facts.created_at,
        )
    if payment is not None:
        payment.checkout_id = payment.checkout_id or facts.checkout_id
        payment.stripe_payment_intent_id = payment.stripe_payment_intent_id or facts.id
        fill_subscription(ctx, payment)


HANDLERS = {
    "charge.succeeded": handle_charge,
    "charge.updated": handle_charge,
    "charge.captured": handle_charge,
    "charge.failed": handle_charge,
    "charge.refunded": handle_charge,
    "payment_intent.succeeded": handle_payment_intent,
    "payment_intent.payment_failed": handle_payment_intent,
}
