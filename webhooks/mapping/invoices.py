"""Invoices and invoice payments: which subscription an invoice bills (the
current `parent.subscription_details` or the older `subscription`) and which
payment paid it (invoice payments now, `invoice.charge` / `payment_intent`
before). Money is never read from an invoice. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhooks.mapping.common import Json, at, currency_of, object_id


@dataclass(frozen=True)
class InvoiceFacts:
    id: str
    status: str | None
    billing_reason: str | None
    customer_id: str | None
    email: str | None
    name: str | None
    subscription_id: str | None
    checkout_id: str | None
    amount_paid: int
    currency: str
    created_at: datetime
    livemode: bool
    # Old versions only: the charge and payment intent that paid it.
    charge_id: str | None
    payment_intent_id: str | None
    old_shape: bool
    paid: bool


def invoice_subscription(obj: Json) -> str | None:
    """The subscription behind an invoice (`parent.subscription_details` now,
    `subscription` before 2025-03-31); None for a one-off invoice."""
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or obj.get("subscription_details") or {}
    return object_id(details.get("subscription")) or object_id(obj.get("subscription"))


def invoice(obj: Json) -> InvoiceFacts:
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or obj.get("subscription_details") or {}
    subscription_id = invoice_subscription(obj)
    meta = {str(k): str(v) for k, v in (details.get("metadata") or {}).items()}
    old_shape = "charge" in obj or "payment_intent" in obj
    paid = obj.get("status") == "paid" or bool(obj.get("paid"))
    return InvoiceFacts(
        id=str(obj["id"]),
        status=obj.get("status"),
        billing_reason=obj.get("billing_reason"),
        customer_id=object_id(obj.get("customer")),
        email=obj.get("customer_email"),
        name=obj.get("customer_name"),
        subscription_id=subscription_id,
        checkout_id=meta.get("checkout_id"),
        amount_paid=int(obj.get("amount_paid") or 0),
        currency=currency_of(obj.get("currency") or "usd"),
        created_at=at(obj["created"]),
        livemode=bool(obj.get("livemode")),
        charge_id=object_id(obj.get("charge")),
        payment_intent_id=object_id(obj.get("payment_intent")),
        old_shape=old_shape,
        paid=paid,
    )


@dataclass(frozen=True)
class InvoicePaymentFacts:
    id: str
    invoice_id: str
    payment_intent_id: str | None
    charge_id: str | None
    status: str | None


def invoice_payment(obj: Json) -> InvoicePaymentFacts:
    payment = obj.get("payment") or {}
    return InvoicePaymentFacts(
        id=str(obj["id"]),
        invoice_id=str(object_id(obj.get("invoice"))),
        payment_intent_id=object_id(payment.get("payment_intent")),
        charge_id=object_id(payment.get("charge")),
        status=obj.get("status"),
    )
