"""Checkout sessions: our checkout id (client_reference_id or metadata), the
customer, and what the session led to. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webhooks.mapping.common import Json, metadata_of, object_id


@dataclass(frozen=True)
class CheckoutFacts:
    id: str
    checkout_id: str | None
    status: str | None
    payment_status: str | None
    mode: str | None
    customer_id: str | None
    email: str | None
    name: str | None
    payment_intent_id: str | None
    subscription_id: str | None
    invoice_id: str | None
    livemode: bool
    metadata: dict[str, str] = field(default_factory=dict)


def checkout_session(obj: Json) -> CheckoutFacts:
    meta = metadata_of(obj)
    details = obj.get("customer_details") or {}
    return CheckoutFacts(
        id=str(obj["id"]),
        checkout_id=obj.get("client_reference_id") or meta.get("checkout_id"),
        status=obj.get("status"),
        payment_status=obj.get("payment_status"),
        mode=obj.get("mode"),
        customer_id=object_id(obj.get("customer")),
        email=details.get("email") or obj.get("customer_email"),
        name=details.get("name"),
        payment_intent_id=object_id(obj.get("payment_intent")),
        subscription_id=object_id(obj.get("subscription")),
        invoice_id=object_id(obj.get("invoice")),
        livemode=bool(obj.get("livemode")),
        metadata=meta,
    )
