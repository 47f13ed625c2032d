"""Charges and payment intents, in every shape we read: the current one (no
`invoice` on a charge) and older ones (`charge.invoice`, `payment_intent.invoice`
and its `charges` list). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from webhooks.mapping.balance import TxnRef, txn_ref
from webhooks.mapping.common import Json, at, currency_of, frequency_of, metadata_of, object_id
from webhooks.mapping.invoices import invoice_subscription
from webhooks.mapping.refunds import RefundFacts, refunds_listed_on_charge


@dataclass(frozen=True)
class ChargeFacts:
    id: str
    status: str
    amount_minor: int
    currency: str
    created_at: datetime
    livemode: bool
    customer_id: str | None
    email: str | None
    name: str | None
    payment_intent_id: str | None
    balance_transaction: TxnRef | None
    checkout_id: str | None
    frequency: str | None  # from our metadata, when the payment came through our form
    # Old API versions say which invoice a charge paid (`invoice`, None for
    # none); since 2025-03-31 the field is gone and `invoice_known` is False.
    invoice_id: str | None
    invoice_known: bool
    refunded: bool = False
    disputed: bool = False
    # A manual-capture charge succeeds as an authorisation (captured false):
    # no money moved until it is captured, and a released one never moves any.
    captured: bool = True
    # What was refunded of the captured money: `amount_refunded` less the
    # uncaptured rest Stripe releases at a partial capture (0 if uncaptured).
    amount_refunded_minor: int = 0
    # The refunds the payload lists (API versions before 2022-11-15).
    refunds: tuple[RefundFacts, ...] = ()
    # An expanded `invoice` (old versions) says whether a subscription is behind it.
    invoice_expanded: bool = False
    invoice_subscription_id: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def recognisable(self) -> bool:
        """Money moved: the charge succeeded and was captured."""
        return self.succeeded and self.captured


def charge(obj: Json, *, invoice_hint: str | None = None) -> ChargeFacts:
    meta = metadata_of(obj)
    billing = obj.get("billing_details") or {}
    authorised = int(obj["amount"])
    # Payloads without the field (none Stripe sends today) count as captured.
    captured = bool(obj.get("captured", True))
    amount_captured = obj.get("amount_captured")
    amount = int(amount_captured) if captured and amount_captured else authorised
    released = authorised - amount if captured else authorised
    refunded_of_captured = max(0, int(obj.get("amount_refunded") or 0) - released)
    invoice_known = "invoice" in obj or invoice_hint is not None
    invoice_obj = obj.get("invoice")
    return ChargeFacts(
        id=str(obj["id"]),
        status=str(obj.get("status") or ("succeeded" if obj.get("paid") else "pending")),
        amount_minor=amount,
        currency=currency_of(obj["currency"]),
        created_at=at(obj["created"]),
        livemode=bool(obj.get("livemode")),
        customer_id=object_id(obj.get("customer")),
        email=billing.get("email") or obj.get("receipt_email"),
        name=billing.get("name"),
        payment_intent_id=object_id(obj.get("payment_intent")),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        checkout_id=meta.get("checkout_id"),
        frequency=frequency_of(meta),
        invoice_id=object_id(obj.get("invoice")) or invoice_hint,
        invoice_known=invoice_known,
        refunded=bool(obj.get("refunded")),
        disputed=bool(obj.get("disputed")),
        captured=captured,
        amount_refunded_minor=refunded_of_captured if captured else 0,
        refunds=tuple(refunds_listed_on_charge(obj)),
        invoice_expanded=isinstance(invoice_obj, dict),
        invoice_subscription_id=(
            invoice_subscription(invoice_obj) if isinstance(invoice_obj, dict) else None
        ),
    )


@dataclass(frozen=True)
class PaymentIntentFacts:
    id: str
    status: str
    amount_received: int
    currency: str
    created_at: datetime
    livemode: bool
    customer_id: str | None
    email: str | None
    checkout_id: str | None
    frequency: str | None
    latest_charge_id: str | None
    invoice_id: str | None
    invoice_known: bool
    # Old versions list the charges inside the intent (`charges.data`).
    charges: tuple[ChargeFacts, ...] = ()
    invoice_expanded: bool = False
    invoice_subscription_id: str | None = None


def payment_intent(obj: Json) -> PaymentIntentFacts:
    meta = metadata_of(obj)
    invoice_id = object_id(obj.get("invoice"))
    invoice_known = "invoice" in obj
    listed = (obj.get("charges") or {}).get("data") or []
    charges = tuple(
        charge(
            {**c, "metadata": c.get("metadata") or obj.get("metadata") or {}},
            invoice_hint=invoice_id if invoice_known else None,
        )
        for c in listed
    )
    if invoice_known and invoice_id is None:
        # An old intent that paid no invoice: its charges paid none either.
        charges = tuple(replace(c, invoice_known=True) for c in charges)
    return PaymentIntentFacts(
        id=str(obj["id"]),
        status=str(obj.get("status")),
        amount_received=int(obj.get("amount_received") or 0),
        currency=currency_of(obj["currency"]),
        created_at=at(obj["created"]),
        livemode=bool(obj.get("livemode")),
        customer_id=object_id(obj.get("customer")),
        email=obj.get("receipt_email"),
        checkout_id=meta.get("checkout_id"),
        frequency=frequency_of(meta),
        latest_charge_id=object_id(obj.get("latest_charge")),
        invoice_id=invoice_id,
        invoice_known=invoice_known,
        charges=charges,
        invoice_expanded=isinstance(obj.get("invoice"), dict),
        invoice_subscription_id=(
            invoice_subscription(obj["invoice"]) if isinstance(obj.get("invoice"), dict) else None
        ),
    )
