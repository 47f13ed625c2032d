"""Pure mapping from Stripe payloads (plain dicts, any API version we may be
sent) to small typed facts the handlers act on.

Reads both the current shapes (2026-10-28.endive: invoice parents, invoice
payments, subscription item periods, charges without `invoice`) and older ones
(`invoice.subscription` / `invoice.charge`, `payment_intent.invoice` and
`charges`, `subscription.current_period_end`). No database, no Stripe calls,
no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from app.ledger import BalanceTxn

Json = dict[str, Any]


def to_datetime(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(int(unix), UTC)


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(int(unix), UTC)


def object_id(value: Any) -> str | None:
    """An id whether Stripe sent the id or the expanded object."""
    if value is None:
        return None
    if isinstance(value, dict):
        found = value.get("id")
        return str(found) if found else None
    return str(value)


def _metadata(obj: Json) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _frequency(meta: dict[str, str]) -> str | None:
    value = meta.get("frequency")
    return value if value in ("once", "month", "year") else None


def _currency(value: Any) -> str:
    return str(value).lower()


# -- balance transactions ----------------------------------------------------


def balance_txn(obj: Json) -> BalanceTxn:
    """A balance transaction (txn_...) object's figures."""
    return BalanceTxn(
        id=str(obj["id"]),
        type=str(obj.get("type") or "adjustment"),
        currency=_currency(obj["currency"]),
        amount_minor=int(obj["amount"]),
        fee_minor=int(obj.get("fee") or 0),
        net_minor=int(obj["net"]),
        created_at=_at(obj["created"]),
        source=object_id(obj.get("source")),
        reporting_category=obj.get("reporting_category"),
    )


@dataclass(frozen=True)
class TxnRef:
    """A balance transaction as a payload has it: its id, and its figures when
    the payload expanded it."""

    id: str
    expanded: BalanceTxn | None = None


def txn_ref(value: Any) -> TxnRef | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return TxnRef(str(value["id"]), balance_txn(value) if "amount" in value else None)
    return TxnRef(str(value))


# -- charges and payment intents ---------------------------------------------


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

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def charge(obj: Json, *, invoice_hint: str | None = None) -> ChargeFacts:
    meta = _metadata(obj)
    billing = obj.get("billing_details") or {}
    captured = obj.get("amount_captured")
    amount = int(captured) if obj.get("captured") and captured else int(obj["amount"])
    invoice_known = "invoice" in obj or invoice_hint is not None
    return ChargeFacts(
        id=str(obj["id"]),
        status=str(obj.get("status") or ("succeeded" if obj.get("paid") else "pending")),
        amount_minor=amount,
        currency=_currency(obj["currency"]),
        created_at=_at(obj["created"]),
        livemode=bool(obj.get("livemode")),
        customer_id=object_id(obj.get("customer")),
        email=billing.get("email") or obj.get("receipt_email"),
        name=billing.get("name"),
        payment_intent_id=object_id(obj.get("payment_intent")),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        checkout_id=meta.get("checkout_id"),
        frequency=_frequency(meta),
        invoice_id=object_id(obj.get("invoice")) or invoice_hint,
        invoice_known=invoice_known,
        refunded=bool(obj.get("refunded")),
        disputed=bool(obj.get("disputed")),
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


def payment_intent(obj: Json) -> PaymentIntentFacts:
    meta = _metadata(obj)
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
        currency=_currency(obj["currency"]),
        created_at=_at(obj["created"]),
        livemode=bool(obj.get("livemode")),
        customer_id=object_id(obj.get("customer")),
        email=obj.get("receipt_email"),
        checkout_id=meta.get("checkout_id"),
        frequency=_frequency(meta),
        latest_charge_id=object_id(obj.get("latest_charge")),
        invoice_id=invoice_id,
        invoice_known=invoice_known,
        charges=charges,
    )


# -- refunds, disputes, payouts ------------------------------------------------


@dataclass(frozen=True)
class RefundFacts:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    created_at: datetime
    balance_transaction: TxnRef | None
    failure_balance_transaction: TxnRef | None


def refund(obj: Json) -> RefundFacts:
    return RefundFacts(
        id=str(obj["id"]),
        charge_id=object_id(obj.get("charge")),
        payment_intent_id=object_id(obj.get("payment_intent")),
        amount_minor=int(obj["amount"]),
        currency=_currency(obj["currency"]),
        status=str(obj.get("status") or "pending"),
        reason=obj.get("reason"),
        created_at=_at(obj["created"]),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        failure_balance_transaction=txn_ref(obj.get("failure_balance_transaction")),
    )


def refunds_listed_on_charge(obj: Json) -> list[RefundFacts]:
    """Old versions (before 2022-11-15) include `charge.refunds.data`: real
    refund objects, each with its own id, so they may be posted like refund
    events (never derived from `amount_refunded`)."""
    listed = (obj.get("refunds") or {}).get("data") or []
    return [refund(r) for r in listed if r.get("object") == "refund"]


DISPUTE_OUTCOMES = {"won": "won", "lost": "lost", "warning_closed": "warning_closed"}


@dataclass(frozen=True)
class DisputeFacts:
    id: str
    charge_id: str | None
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    created_at: datetime
    balance_transactions: tuple[BalanceTxn, ...]

    @property
    def outcome(self) -> str | None:
        return DISPUTE_OUTCOMES.get(self.status)


def dispute(obj: Json) -> DisputeFacts:
    txns = tuple(
        balance_txn(t) for t in obj.get("balance_transactions") or [] if isinstance(t, dict)
    )
    return DisputeFacts(
        id=str(obj["id"]),
        charge_id=object_id(obj.get("charge")),
        amount_minor=int(obj["amount"]),
        currency=_currency(obj["currency"]),
        status=str(obj.get("status")),
        reason=obj.get("reason"),
        created_at=_at(obj["created"]),
        balance_transactions=txns,
    )


def dispute_kind(txn: BalanceTxn) -> str:
    """A dispute's balance transaction: money out is a withdrawal (`dispute`),
    money back a reinstatement (`dispute_reversal`)."""
    if txn.reporting_category == "dispute_reversal":
        return "dispute_reversal"
    if txn.reporting_category == "dispute":
        return "dispute"
    return "dispute" if txn.amount_minor < 0 else "dispute_reversal"


@dataclass(frozen=True)
class PayoutFacts:
    id: str
    amount_minor: int
    currency: str
    status: str
    arrival_at: datetime | None
    created_at: datetime
    balance_transaction: TxnRef | None
    failure_balance_transaction: TxnRef | None


def payout(obj: Json) -> PayoutFacts:
    return PayoutFacts(
        id=str(obj["id"]),
        amount_minor=int(obj["amount"]),
        currency=_currency(obj["currency"]),
        status=str(obj.get("status")),
        arrival_at=to_datetime(obj.get("arrival_date")),
        created_at=_at(obj["created"]),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        failure_balance_transaction=txn_ref(obj.get("failure_balance_transaction")),
    )


# -- invoices, invoice payments, subscriptions, checkout sessions -------------


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


def invoice(obj: Json) -> InvoiceFacts:
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or obj.get("subscription_details") or {}
    subscription_id = object_id(details.get("subscription")) or object_id(obj.get("subscription"))
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
        currency=_currency(obj.get("currency") or "usd"),
        created_at=_at(obj["created"]),
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


@dataclass(frozen=True)
class SubscriptionFacts:
    id: str
    status: str
    customer_id: str | None
    checkout_id: str | None
    amount_minor: int | None
    currency: str | None
    interval: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    livemode: bool


def _recurring_amount(obj: Json) -> tuple[int | None, str | None, str | None]:
    """Sum of the items' unit amounts times quantity, the currency and interval.
    New versions: items.data[].price; old ones also `plan` at the top."""
    items = (obj.get("items") or {}).get("data") or []
    total, currency, interval = 0, None, None
    for item in items:
        price = item.get("price") or item.get("plan") or {}
        unit = price.get("unit_amount", price.get("amount"))
        if unit is None:
            continue
        total += int(unit) * int(item.get("quantity") or 1)
        currency = currency or price.get("currency")
        recurring = price.get("recurring") or {}
        interval = interval or recurring.get("interval") or price.get("interval")
    if not items and obj.get("plan"):
        plan = obj["plan"]
        total = int(plan.get("amount") or 0) * int(obj.get("quantity") or 1)
        currency, interval = plan.get("currency"), plan.get("interval")
    if currency is None:
        return None, None, interval
    return total, _currency(currency), interval


def subscription(obj: Json) -> SubscriptionFacts:
    amount, currency, interval = _recurring_amount(obj)
    items = (obj.get("items") or {}).get("data") or []
    period_ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
    period_end = max(period_ends) if period_ends else obj.get("current_period_end")
    return SubscriptionFacts(
        id=str(obj["id"]),
        status=str(obj.get("status")),
        customer_id=object_id(obj.get("customer")),
        checkout_id=_metadata(obj).get("checkout_id"),
        amount_minor=amount,
        currency=currency or (_currency(obj["currency"]) if obj.get("currency") else None),
        interval=interval,
        current_period_end=to_datetime(period_end),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        canceled_at=to_datetime(obj.get("canceled_at")),
        ended_at=to_datetime(obj.get("ended_at")),
        livemode=bool(obj.get("livemode")),
    )


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
    meta = _metadata(obj)
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


def event_object(event: Json) -> Json:
    obj: Json = event["data"]["object"]
    return obj


def event_created(event: Json) -> datetime:
    return _at(event["created"])
