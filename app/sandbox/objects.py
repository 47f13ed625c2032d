"""Builders of the sandbox's Stripe-shaped payment objects (API
2026-10-28.endive): checkout session, customer, payment intent, charge,
balance transaction, and the events of one action; plus the checks on
Checkout's create parameters. Pure: never touches the database or the network."""

from __future__ import annotations

import copy
import secrets
import string
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.money import FeeCover
from app.payments import PaymentsError

AVAILABLE_AFTER = timedelta(days=2)
SESSION_LIFETIME = timedelta(hours=24)
_ALPHABET = string.ascii_letters + string.digits


def processing_fee(amount: int, currency: str, fees: Mapping[str, Mapping[str, int]]) -> int:
    """The fee on a charge: the currency's rate, rounded half up, plus its fixed
    part, from the `[processing_fees]` table (config/default.toml)."""
    return FeeCover.from_table(fees, currency).fee_on(amount)


def new_id(prefix: str) -> str:
    return f"{prefix}_sbx_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def checkout_session(
    session_id: str,
    params: dict[str, Any],
    amount: int,
    currency: str,
    public_base_url: str,
    now: datetime,
) -> dict[str, Any]:
    """A new open Checkout Session for checked create parameters."""
    customer = params.get("customer")
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "created": ts(now),
        "currency": currency,
        "customer": customer,
        "customer_creation": (None if customer else params.get("customer_creation", "if_required")),
        "customer_details": None,
        "customer_email": None if customer else params.get("customer_email"),
        "expires_at": ts(now + SESSION_LIFETIME),
        "invoice": None,
        "livemode": False,
        "locale": params.get("locale"),
        "metadata": dict(params.get("metadata") or {}),
        "mode": params["mode"],
        "payment_intent": None,
        "payment_status": "unpaid",
        "status": "open",
        "submit_type": params.get("submit_type"),
        "subscription": None,
        "success_url": params["success_url"],
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": f"{public_base_url}/sandbox/checkout/{session_id}",
    }


def validate_params(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int, str | None]:
    """The parts of Checkout's create parameters the sandbox uses, checked as
    Stripe would: (line items, currency, total, recurring interval)."""
    mode = params.get("mode")
    if mode not in ("payment", "subscription"):
        raise PaymentsError("invalid", "mode must be payment or subscription")
    if not params.get("success_url"):
        raise PaymentsError("invalid", "success_url is required")
    raw_items = params.get("line_items") or []
    if not raw_items:
        raise PaymentsError("invalid", "line_items is required")
    items: list[dict[str, Any]] = []
    currencies: set[str] = set()
    intervals: set[str] = set()
    for raw in raw_items:
        price_data = raw.get("price_data")
        if not isinstance(price_data, dict):
            raise PaymentsError("invalid", "the sandbox needs line_items[].price_data")
        unit_amount = price_data.get("unit_amount")
        quantity = raw.get("quantity", 1)
        currency = str(price_data.get("currency") or "")
        if not isinstance(unit_amount, int) or isinstance(unit_amount, bool) or unit_amount < 0:
            raise PaymentsError("invalid", "line_items[].price_data.unit_amount must be an integer")
        if not isinstance(quantity, int) or quantity < 1:
            raise PaymentsError("invalid", "line_items[].quantity must be a positive integer")
        if len(currency) != 3 or currency != currency.lower():
            raise PaymentsError("invalid", "line_items[].price_data.currency is invalid")
        recurring = price_data.get("recurring")
        if (mode == "subscription") != bool(recurring):
            raise PaymentsError("invalid", "recurring prices need mode subscription, and only they")
        if recurring:
            intervals.add(str(recurring.get("interval")))
        currencies.add(currency)
        product_data = price_data.get("product_data") or {}
        items.append(
            {
                "currency": currency,
                "unit_amount": unit_amount,
                "quantity": quantity,
                "product": price_data.get("product"),
                "product_name": product_data.get("name"),
            }
        )
    if len(currencies) != 1:
        raise PaymentsError("invalid", "all line items must share one currency")
    if len(intervals) > 1 or not intervals <= {"day", "week", "month", "year"}:
        raise PaymentsError("invalid", "recurring interval is invalid")
    total = sum(item["unit_amount"] * item["quantity"] for item in items)
    if total <= 0:
        raise PaymentsError("invalid", "the total must be positive")
    return items, currencies.pop(), total, (intervals.pop() if intervals else None)


def customer(customer_id: str, email: str, now: datetime) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": ts(now),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email or None,
        "invoice_prefix": customer_id[-8:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def customer_details(email: str) -> dict[str, Any]:
    return {
        "address": None,
        "email": email or None,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def payment_intent(
    amount: int,
    currency: str,
    customer: str | None,
    metadata: dict[str, Any],
    description: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": new_id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "confirmation_method": "automatic",
        "created": ts(now),
        "currency": currency,
        "customer": customer,
        "description": description,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": dict(metadata),
        "next_action": None,
        "payment_method": None,
        "payment_method_types": ["card"],
        "receipt_email": None,
        "setup_future_usage": None,
        "status": "requires_payment_method",
    }


def charge(intent: dict[str, Any], email: str, now: datetime, card: str) -> dict[str, Any]:
    charge_id = new_id("ch")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"],
        "amount_refunded": 0,
        "balance_transaction": None,
        "billing_details": {
            "address": None,
            "email": email or None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "SANDBOX",
        "captured": True,
        "created": ts(now),
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(intent["metadata"]),
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": intent["id"],
        "payment_method": new_id("pm"),
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "country": "US",
                "exp_month": 12,
                "exp_year": now.year + 3,
                "funding": "credit",
                "last4": card[-4:],
                "network": "visa",
            },
            "type": "card",
        },
        "receipt_email": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "status": "succeeded",
    }


def balance_transaction(
    charge: dict[str, Any], now: datetime, fees: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    amount, currency = charge["amount"], charge["currency"]
    fee = processing_fee(amount, currency, fees)
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": ts(now + AVAILABLE_AFTER),
        "balance_type": "payments",
        "created": ts(now),
        "currency": currency,
        "description": charge["description"],
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ],
        "net": amount - fee,
        "reporting_category": "charge",
        "source": charge["id"],
        "status": "pending",
        "type": "charge",
    }


class Events:
    """The events of one action, in the order Stripe sends them, each with a
    snapshot of its object at that moment."""

    def __init__(self, api_version: str, now: datetime) -> None:
        self.api_version = api_version
        self.now = now
        self.request_id = new_id("req")
        self.items: list[dict[str, Any]] = []
        self.charge_before_settlement: dict[str, Any] | None = None

    def add(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        snapshot: dict[str, Any] | None = None,
        previous_attributes: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"object": copy.deepcopy(snapshot if snapshot else obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        self.items.append(
            {
                "id": new_id("evt"),
                "object": "event",
                "api_version": self.api_version,
                "created": ts(self.now),
                "data": data,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": self.request_id, "idempotency_key": None},
                "type": event_type,
            }
        )
