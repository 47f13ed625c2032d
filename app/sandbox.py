"""The offline payments sandbox: a small fake Stripe for development without a
STRIPE_SECRET_KEY. It keeps Stripe-shaped objects (API 2026-10-28.endive) in
`sandbox_objects`, answers the Payments protocol and the read-only Stripe
look-ups from them, and delivers signed events to our own webhook endpoint
over HTTP, keeping undelivered ones for a later try.

Never used in production or when a Stripe key is set (see `sandbox_allowed`).
Moves no money. Never logs emails. Writes go through the caller's session and
are never committed here; only `deliver_pending` runs its own short
transactions (to mark events delivered), and never while a request is waiting
on the database.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.clock import utcnow
from app.db import Database
from app.models import SandboxObject
from app.stripe_api import PaymentsError

log = logging.getLogger(__name__)

SUCCEEDING_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
FEE_RATE_BP = 290  # 2.9 %
FEE_FIXED_MINOR = 30
AVAILABLE_AFTER = timedelta(days=2)
SESSION_LIFETIME = timedelta(hours=24)
DELIVERY_TIMEOUT_SECONDS = 10
_ALPHABET = string.ascii_letters + string.digits


def sandbox_allowed(config: dict[str, Any]) -> bool:
    """The sandbox may stand in for Stripe: no key, not production, enabled."""
    if config.get("STRIPE_SECRET_KEY"):
        return False
    if config.get("APP_ENV") == "production":
        return False
    return bool(config.get("SANDBOX_ENABLED", False))


def processing_fee(amount: int) -> int:
    """Stripe's standard card fee, 2.9 % + 30 minor units, rounded half up."""
    return (amount * FEE_RATE_BP + 5_000) // 10_000 + FEE_FIXED_MINOR


def new_id(prefix: str) -> str:
    return f"{prefix}_sbx_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: t=<unix>,v1=hex(HMAC-SHA256(secret, "{t}." + body))."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def add_interval(moment: datetime, interval: str, count: int = 1) -> datetime:
    """`moment` plus `count` months or years, keeping the day where the month
    has it (Jan 31 + 1 month = Feb 28/29), as Stripe's billing does."""
    months = count * (12 if interval == "year" else 1)
    if interval not in ("month", "year"):
        days = {"day": 1, "week": 7}[interval] * count
        return moment + timedelta(days=days)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class PayResult:
    """What happened on the sandbox checkout page. outcome: paid, declined,
    invalid_card, complete (paid before), expired."""

    outcome: str
    redirect_url: str | None = None


@dataclass
class DeliveryReport:
    delivered: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pending == 0


class SandboxPayments:
    """Stands in for `app.stripe_api.StripeApi` (Payments and the look-ups)."""

    livemode = False

    def __init__(
        self,
        database: Database,
        *,
        session: Callable[[], Session],
        public_base_url: str,
        webhook_url: str,
        webhook_secret: str,
        api_version: str,
    ) -> None:
        self._database = database
        self._session = session
        self.public_base_url = public_base_url.rstrip("/")
        self.webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self.api_version = api_version
        self._reader = _reader_engine(database)

    @classmethod
    def from_config(
        cls, database: Database, config: dict[str, Any], session: Callable[[], Session]
    ) -> SandboxPayments:
        base = str(config["PUBLIC_BASE_URL"]).rstrip("/")
        return cls(
            database,
            session=session,
            public_base_url=base,
            webhook_url=str(config.get("SANDBOX_WEBHOOK_URL") or f"{base}/webhooks/stripe"),
            webhook_secret=config["STRIPE_WEBHOOK_SECRETS"][0],
            api_version=str(config["STRIPE_API_VERSION"]),
        )

    # -- Payments -------------------------------------------------------------

    def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """A new open Checkout Session; the same key with the same parameters
        gives the same session, with other parameters an error (as Stripe)."""
        session = self._session()
        params_hash = hashlib.sha256(_canonical(params).encode()).hexdigest()
        key_id = "idem_" + hashlib.sha256(idempotency_key.encode()).hexdigest()
        remembered = _load(session, key_id)
        if remembered is not None:
            if remembered["params_hash"] != params_hash:
                raise PaymentsError(
                    "invalid",
                    "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with.",
                )
            response: dict[str, Any] = remembered["response"]
            return response
        line_items, currency, amount, interval = _validate_params(params)
        now = utcnow()
        session_id = new_id("cs_test")
        customer = params.get("customer")
        checkout_session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": _ts(now),
            "currency": currency,
            "customer": customer,
            "customer_creation": (
                None if customer else params.get("customer_creation", "if_required")
            ),
            "customer_details": None,
            "customer_email": None if customer else params.get("customer_email"),
            "expires_at": _ts(now + SESSION_LIFETIME),
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
            "url": f"{self.public_base_url}/sandbox/checkout/{session_id}",
        }
        _store(session, checkout_session, now)
        _store(
            session,
            {
                "id": f"{session_id}:params",
                "object": "sandbox.checkout_params",
                "line_items": line_items,
                "interval": interval,
                "payment_intent_metadata": dict(
                    (params.get("payment_intent_data") or {}).get("metadata") or {}
                ),
                "subscription_metadata": dict(
                    (params.get("subscription_data") or {}).get("metadata") or {}
                ),
            },
            now,
        )
        _store(
            session,
            {
                "id": key_id,
                "object": "sandbox.idempotency_key",
                "params_hash": params_hash,
                "response": checkout_session,
            },
            now,
        )
        session.flush()
        return copy.deepcopy(checkout_session)

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The session with `payment_intent` expanded, as StripeApi asks for it."""
        found = self._read(session_id, "checkout.session")
        intent_id = found.get("payment_intent")
        if intent_id:
            found["payment_intent"] = self._read(intent_id, "payment_intent")
        return found

    # -- read-only look-ups (StripeLookup) ---------------------------------------

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        return self._read(balance_transaction_id, "balance_transaction")

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._read(charge_id, "charge")

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return self._read(payment_intent_id, "payment_intent")

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id, "customer")

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._read(subscription_id, "subscription")

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._read(invoice_id, "invoice")

    def list_invoice_payments(
        self, *, invoice: str | None = None, payment_intent: str | None = None
    ) -> list[dict[str, Any]]:
        """Invoice payments of an invoice, or those paid by a payment intent."""
        if (invoice is None) == (payment_intent is None):
            raise ValueError("give exactly one of invoice, payment_intent")
        found = []
        for item in self._read_all("invoice_payment"):
            if invoice is not None and item["invoice"] != invoice:
                continue
            if payment_intent is not None and item["payment"].get("payment_intent") != (
                payment_intent
            ):
                continue
            found.append(item)
        return sorted(found, key=lambda item: item["created"], reverse=True)

    def list_balance_transactions(self, *, payout: str) -> list[dict[str, Any]]:
        """The sandbox makes no payouts, so any payout is unknown (not found,
        as Stripe answers for a payout id it does not have)."""
        self._read(payout, "payout")
        return []

    def _read(self, object_id: str, object_type: str) -> dict[str, Any]:
        with self._reader.connect() as conn:
            raw = conn.execute(
                select(SandboxObject.json).where(
                    SandboxObject.id == object_id, SandboxObject.type == object_type
                )
            ).scalar_one_or_none()
        if raw is None:
            raise PaymentsError("not_found", f"No such {object_type}")
        found: dict[str, Any] = json.loads(raw)
        return found

    def _read_all(self, object_type: str) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            rows = conn.execute(
                select(SandboxObject.json).where(SandboxObject.type == object_type)
            ).scalars()
            return [json.loads(raw) for raw in rows]

    # -- the checkout page ------------------------------------------------------

    def checkout_page(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The session and what it sells (line items, interval), or None."""
        try:
            checkout_session = self._read(session_id, "checkout.session")
            params = self._read(f"{session_id}:params", "sandbox.checkout_params")
        except PaymentsError:
            return None
        return checkout_session, params

    def known_email(self, checkout_session: dict[str, Any]) -> str | None:
        """The email Checkout would show fixed: the customer_email given, or
        the existing customer's."""
        if checkout_session.get("customer_email"):
            return str(checkout_session["customer_email"])
        customer_id = checkout_session.get("customer")
        if customer_id:
            try:
                return self.retrieve_customer(customer_id).get("email")
            except PaymentsError:
                return None
        return None

    def pay(self, session: Session, session_id: str, card_number: str, email: str) -> PayResult:
        """Pay an open session with a test card: the Stripe objects and the
        events Stripe would send (stored, not yet delivered). Flushes only."""
        row = session.get(SandboxObject, session_id, with_for_update=True)
        if row is None or row.type != "checkout.session":
            raise PaymentsError("not_found", "No such checkout.session")
        checkout_session: dict[str, Any] = json.loads(row.json)
        success_url = str(checkout_session["success_url"]).replace(
            "{CHECKOUT_SESSION_ID}", session_id
        )
        now = utcnow()
        if checkout_session["status"] == "complete":
            return PayResult("complete", success_url)
        if checkout_session["status"] == "expired" or checkout_session["expires_at"] < _ts(now):
            return PayResult("expired")
        number = "".join(ch for ch in card_number if ch.isdigit())
        if number not in (SUCCEEDING_CARD, DECLINED_CARD):
            return PayResult("invalid_card")
        params = _require(session, f"{session_id}:params")
        events = _Events(self.api_version, now)
        if number == DECLINED_CARD:
            self._decline(session, checkout_session, params, email, events, now)
            events.store(session)
            return PayResult("declined")
        customer = self._customer_for(session, checkout_session, email, events, now)
        checkout_session["customer"] = customer["id"] if customer else None
        checkout_session["customer_details"] = _customer_details(email)
        if checkout_session["mode"] == "subscription":
            assert customer is not None  # made above for every subscription
            self._subscribe(session, checkout_session, params, customer, email, events, now)
        else:
            self._pay_once(session, checkout_session, params, email, events, now)
        session.flush()
        events.store(session)
        return PayResult("paid", success_url)

    def _customer_for(
        self,
        session: Session,
        checkout_session: dict[str, Any],
        email: str,
        events: _Events,
        now: datetime,
    ) -> dict[str, Any] | None:
        customer_id = checkout_session.get("customer")
        if customer_id:
            existing = _load(session, customer_id)
            if existing is not None:
                return existing
            # A customer this sandbox never made (say, from Stripe test mode in
            # the same database): adopt its id rather than fail the donor.
            adopted = _customer(customer_id, email, now)
            _store(session, adopted, now)
            return adopted
        needs_customer = checkout_session["mode"] == "subscription" or (
            checkout_session.get("customer_creation") == "always"
        )
        if not needs_customer:
            return None
        customer = _customer(new_id("cus"), email, now)
        _store(session, customer, now)
        events.add("customer.created", customer)
        return customer

    def _decline(
        self,
        session: Session,
        checkout_session: dict[str, Any],
        params: dict[str, Any],
        email: str,
        events: _Events,
        now: datetime,
    ) -> None:
        intent = self._intent_for(session, checkout_session, params, now)
        charge = _charge(intent, email, now, DECLINED_CARD)
        charge.update(
            status="failed",
            paid=False,
            captured=False,
            amount_captured=0,
            failure_code="card_declined",
            failure_message="Your card was declined.",
            outcome={
                "network_status": "declined_by_network",
                "reason": "generic_decline",
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            },
        )
        intent.update(
            status="requires_payment_method",
            latest_charge=charge["id"],
            amount_received=0,
            last_payment_error={
                "charge": charge["id"],
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "payment_method": {"id": charge["payment_method"], "object": "payment_method"},
                "type": "card_error",
            },
        )
        _store(session, charge, now)
        _store(session, intent, now)
        if checkout_session["mode"] == "payment":
            checkout_session["payment_intent"] = intent["id"]
            _store(session, checkout_session, now)
        events.add("charge.failed", charge)
        events.add("payment_intent.payment_failed", intent)

    def _intent_for(
        self,
        session: Session,
        checkout_session: dict[str, Any],
        params: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """The session's payment intent (a retry after a decline reuses it)."""
        if checkout_session["mode"] == "payment" and checkout_session.get("payment_intent"):
            existing = _load(session, checkout_session["payment_intent"])
            if existing is not None:
                return existing
        metadata = (
            params["payment_intent_metadata"] if checkout_session["mode"] == "payment" else {}
        )
        description = (
            "Subscription creation" if checkout_session["mode"] == "subscription" else None
        )
        return _payment_intent(
            checkout_session["amount_total"],
            checkout_session["currency"],
            checkout_session.get("customer"),
            metadata,
            description,
            now,
        )

    def _pay_once(
        self,
        session: Session,
        checkout_session: dict[str, Any],
        params: dict[str, Any],
        email: str,
        events: _Events,
        now: datetime,
    ) -> None:
        intent = self._intent_for(session, checkout_session, params, now)
        intent["customer"] = checkout_session["customer"]
        intent["last_payment_error"] = None
        charge, _transaction = self._succeed(session, intent, email, events, now)
        checkout_session.update(status="complete", payment_status="paid")
        checkout_session["payment_intent"] = intent["id"]
        _store(session, checkout_session, now)
        events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
        events.add("payment_intent.succeeded", intent)
        events.add("checkout.session.completed", checkout_session)
        events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})

    def _succeed(
        self,
        session: Session,
        intent: dict[str, Any],
        email: str,
        events: _Events,
        now: datetime,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A successful charge on `intent` and its balance transaction. The
        charge is captured asynchronously, as under automatic_async: its
        balance transaction appears after charge.succeeded."""
        charge = _charge(intent, email, now, SUCCEEDING_CARD)
        events.charge_before_settlement = copy.deepcopy(charge)
        transaction = _balance_transaction(charge, now)
        charge["balance_transaction"] = transaction["id"]
        intent.update(status="succeeded", amount_received=intent["amount"])
        intent["latest_charge"] = charge["id"]
        intent["payment_method"] = charge["payment_method"]
        _store(session, charge, now)
        _store(session, transaction, now)
        _store(session, intent, now)
        return charge, transaction

    def _subscribe(
        self,
        session: Session,
        checkout_session: dict[str, Any],
        params: dict[str, Any],
        customer: dict[str, Any],
        email: str,
        events: _Events,
        now: datetime,
    ) -> None:
        interval = params["interval"]
        period_end = add_interval(now, interval)
        subscription_id = new_id("sub")
        items = []
        for line in params["line_items"]:
            items.append(
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "created": _ts(now),
                    "current_period_start": _ts(now),
                    "current_period_end": _ts(period_end),
                    "discounts": [],
                    "metadata": {},
                    "price": _price(line, interval, now),
                    "quantity": line["quantity"],
                    "subscription": subscription_id,
                    "tax_rates": [],
                }
            )
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": _ts(now),
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": _ts(now),
            "currency": checkout_session["currency"],
            "customer": customer["id"],
            "days_until_due": None,
            "default_payment_method": None,
            "description": None,
            "discounts": [],
            "ended_at": None,
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(params["subscription_metadata"]),
            "pending_update": None,
            "schedule": None,
            "start_date": _ts(now),
            "status": "active",
            "trial_end": None,
            "trial_start": None,
        }
        charge, intent, invoice, invoice_payment = self._invoice(
            session, subscription, "subscription_create", email, events, now
        )
        _store(session, subscription, now)
        checkout_session.update(
            status="complete",
            payment_status="paid",
            subscription=subscription_id,
            invoice=invoice["id"],
        )
        _store(session, checkout_session, now)
        events.add("customer.subscription.created", subscription)
        events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
        events.add("payment_intent.succeeded", intent)
        events.add("invoice_payment.paid", invoice_payment)
        events.add("invoice.paid", invoice)
        events.add("invoice.payment_succeeded", invoice)
        events.add("checkout.session.completed", checkout_session)
        events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})

    def _invoice(
        self,
        session: Session,
        subscription: dict[str, Any],
        billing_reason: str,
        email: str,
        events: _Events,
        now: datetime,
        billed_period: tuple[int, int] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """A paid invoice for the subscription's current period, with its
        invoice payment, payment intent, charge and balance transaction.
        `billed_period` is the invoice's own period_start/end: the period just
        ended for a renewal, the creation moment for the first invoice."""
        items = subscription["items"]["data"]
        currency = subscription["currency"]
        total = sum(item["price"]["unit_amount"] * item["quantity"] for item in items)
        invoice_id = new_id("in")
        period_start = items[0]["current_period_start"]
        period_end = items[0]["current_period_end"]
        description = (
            "Subscription creation"
            if billing_reason == "subscription_create"
            else "Subscription update"
        )
        intent = _payment_intent(total, currency, subscription["customer"], {}, description, now)
        charge, _transaction = self._succeed(session, intent, email, events, now)
        lines = [
            {
                "id": new_id("il"),
                "object": "line_item",
                "amount": item["price"]["unit_amount"] * item["quantity"],
                "currency": currency,
                "description": f"{item['quantity']} x {item['price']['product']}",
                "discount_amounts": [],
                "discountable": True,
                "discounts": [],
                "invoice": invoice_id,
                "livemode": False,
                "metadata": {},
                "parent": {
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": subscription["id"],
                        "subscription_item": item["id"],
                    },
                },
                "period": {"start": period_start, "end": period_end},
                "pricing": {
                    "type": "price_details",
                    "price_details": {
                        "price": item["price"]["id"],
                        "product": item["price"]["product"],
                    },
                    "unit_amount_decimal": str(item["price"]["unit_amount"]),
                },
                "quantity": item["quantity"],
                "subtotal": item["price"]["unit_amount"] * item["quantity"],
                "taxes": [],
            }
            for item in items
        ]
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "amount_due": total,
            "amount_paid": total,
            "amount_remaining": 0,
            "amount_overpaid": 0,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": _ts(now),
            "currency": currency,
            "customer": subscription["customer"],
            "customer_email": email or None,
            "description": None,
            "effective_at": _ts(now),
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "number": None,
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
            },
            "period_end": billed_period[1] if billed_period else _ts(now),
            "period_start": billed_period[0] if billed_period else _ts(now),
            "status": "paid",
            "status_transitions": {
                "finalized_at": _ts(now),
                "marked_uncollectible_at": None,
                "paid_at": _ts(now),
                "voided_at": None,
            },
            "subtotal": total,
            "total": total,
        }
        invoice_payment = {
            "id": new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": total,
            "amount_requested": total,
            "created": _ts(now),
            "currency": currency,
            "invoice": invoice_id,
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
            "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": _ts(now)},
        }
        subscription["latest_invoice"] = invoice_id
        _store(session, invoice, now)
        _store(session, invoice_payment, now)
        return charge, intent, invoice, invoice_payment

    # -- renewals ---------------------------------------------------------------

    def active_subscription_ids(self, session: Session) -> list[str]:
        rows = session.scalars(
            select(SandboxObject.json)
            .where(SandboxObject.type == "subscription")
            .order_by(SandboxObject.created_at, SandboxObject.id)
        )
        found = [json.loads(raw) for raw in rows]
        return [sub["id"] for sub in found if sub["status"] in ("active", "past_due")]

    def renew(self, session: Session, subscription_id: str) -> dict[str, Any]:
        """The next period of an active subscription, paid: the renewal's
        invoice (billing_reason subscription_cycle) and its payment, and the
        events Stripe sends for it (stored, not yet delivered). Flushes only."""
        row = session.get(SandboxObject, subscription_id, with_for_update=True)
        if row is None or row.type != "subscription":
            raise PaymentsError("not_found", "No such subscription")
        subscription: dict[str, Any] = json.loads(row.json)
        if subscription["status"] not in ("active", "past_due"):
            raise PaymentsError("invalid", f"subscription is {subscription['status']}")
        now = utcnow()
        events = _Events(self.api_version, now)
        previous = {
            "items": copy.deepcopy(subscription["items"]),
            "latest_invoice": subscription["latest_invoice"],
        }
        first = subscription["items"]["data"][0]
        billed_period = (first["current_period_start"], first["current_period_end"])
        anchor = datetime.fromtimestamp(subscription["billing_cycle_anchor"], now.tzinfo)
        for item in subscription["items"]["data"]:
            start = item["current_period_end"]
            interval = item["price"]["recurring"]["interval"]
            count = item["price"]["recurring"].get("interval_count", 1)
            # Periods count from the billing cycle anchor, so a membership that
            # began on the 31st renews on the 31st again after February.
            periods = 1
            while _ts(add_interval(anchor, interval, count * periods)) <= start:
                periods += 1
            item["current_period_start"] = start
            item["current_period_end"] = _ts(add_interval(anchor, interval, count * periods))
        customer = _load(session, subscription["customer"]) or {}
        email = customer.get("email") or ""
        charge, intent, invoice, invoice_payment = self._invoice(
            session, subscription, "subscription_cycle", email, events, now, billed_period
        )
        _store(session, subscription, now)
        events.add("customer.subscription.updated", subscription, previous_attributes=previous)
        events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
        events.add("payment_intent.succeeded", intent)
        events.add("invoice_payment.paid", invoice_payment)
        events.add("invoice.paid", invoice)
        events.add("invoice.payment_succeeded", invoice)
        events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})
        session.flush()
        events.store(session)
        return invoice

    # -- delivery ----------------------------------------------------------------

    def deliver_pending(self) -> DeliveryReport:
        """POST every undelivered event, oldest first, signed, to the webhook
        URL. A 2xx marks it delivered; anything else keeps it for the next
        try. Stops at the first connection failure (the receiver is down).
        Must not be called inside a transaction on the app's database."""
        report = DeliveryReport()
        with self._database.session() as session:
            pending = list(
                session.execute(
                    select(SandboxObject.id, SandboxObject.json)
                    .where(SandboxObject.type == "event", SandboxObject.delivered_at.is_(None))
                    .order_by(SandboxObject.created_at, SandboxObject.id)
                )
            )
            session.rollback()
        delivered: list[str] = []
        for event_id, body in pending:
            problem = self._post(body.encode())
            if problem is None:
                delivered.append(event_id)
                continue
            report.errors.append(problem)
            if problem.startswith("unreachable"):
                break
        report.pending = len(pending) - len(delivered)
        if delivered:
            with self._database.session() as session, session.begin():
                session.execute(
                    update(SandboxObject)
                    .where(SandboxObject.id.in_(delivered))
                    .values(delivered_at=utcnow())
                )
        report.delivered = len(delivered)
        if report.pending:
            log.warning(
                "sandbox: %d event(s) not delivered to %s (%s); kept for the next delivery",
                report.pending,
                self.webhook_url,
                report.errors[-1],
            )
        elif delivered:
            log.info("sandbox: delivered %d event(s) to %s", len(delivered), self.webhook_url)
        return report

    def _post(self, body: bytes) -> str | None:
        header = signature_header(body, self._webhook_secret, _ts(utcnow()))
        try:
            response = requests.post(
                self.webhook_url,
                data=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) sandbox",
                },
                timeout=DELIVERY_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return f"unreachable: {type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"answered {response.status_code}"


class _Events:
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
                "created": _ts(self.now),
                "data": data,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": self.request_id, "idempotency_key": None},
                "type": event_type,
            }
        )

    def store(self, session: Session) -> None:
        # A microsecond apart, so delivery keeps this order.
        for index, item in enumerate(self.items):
            session.add(
                SandboxObject(
                    id=item["id"],
                    type="event",
                    json=json.dumps(item, separators=(",", ":")),
                    created_at=self.now + timedelta(microseconds=index),
                )
            )
        session.flush()


def _reader_engine(database: Database) -> Engine:
    """Look-ups run while a worker holds a write transaction: on SQLite (where
    our engine begins every transaction IMMEDIATE) they read through a plain
    connection that takes no write lock; elsewhere through the app's engine."""
    if database.dialect != "sqlite":
        return database.engine
    url = make_url(database.url)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def _load(session: Session, object_id: str) -> dict[str, Any] | None:
    row = session.get(SandboxObject, object_id)
    if row is None:
        return None
    found: dict[str, Any] = json.loads(row.json)
    return found


def _require(session: Session, object_id: str) -> dict[str, Any]:
    found = _load(session, object_id)
    if found is None:
        raise PaymentsError("not_found", "No such object")
    return found


def _store(session: Session, obj: dict[str, Any], now: datetime) -> None:
    """Insert or replace `obj` under its id."""
    body = json.dumps(obj, separators=(",", ":"))
    row = session.get(SandboxObject, obj["id"])
    if row is None:
        session.add(SandboxObject(id=obj["id"], type=obj["object"], json=body, created_at=now))
    else:
        row.json = body


def _validate_params(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int, str | None]:
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


def _customer(customer_id: str, email: str, now: datetime) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": _ts(now),
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


def _customer_details(email: str) -> dict[str, Any]:
    return {
        "address": None,
        "email": email or None,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def _price(line: dict[str, Any], interval: str, now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("price"),
        "object": "price",
        "active": False,  # inline price_data makes archived prices, as in Stripe
        "billing_scheme": "per_unit",
        "created": _ts(now),
        "currency": line["currency"],
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": line["product"] or new_id("prod"),
        "recurring": {
            "interval": interval,
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "type": "recurring",
        "unit_amount": line["unit_amount"],
        "unit_amount_decimal": str(line["unit_amount"]),
    }


def _payment_intent(
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
        "created": _ts(now),
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


def _charge(intent: dict[str, Any], email: str, now: datetime, card: str) -> dict[str, Any]:
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
        "created": _ts(now),
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


def _balance_transaction(charge: dict[str, Any], now: datetime) -> dict[str, Any]:
    amount, currency = charge["amount"], charge["currency"]
    fee = processing_fee(amount)
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": _ts(now + AVAILABLE_AFTER),
        "balance_type": "payments",
        "created": _ts(now),
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
