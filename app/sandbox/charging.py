"""What paying a sandbox checkout session or renewing a sandbox subscription
does: the Stripe objects it makes or changes and the events Stripe would
send, stored through the caller's session (flushes only). Never commits,
never delivers events, moves no money."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.payments import PaymentsError
from app.sandbox import billing, objects, store
from app.sandbox.billing import add_interval
from app.sandbox.models import SandboxObject
from app.sandbox.objects import Events, new_id, ts

# The [processing_fees] table: currency -> {rate_bp, fixed}.
Fees = Mapping[str, Mapping[str, int]]

SUCCEEDING_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


@dataclass
class PayResult:
    """What happened on the sandbox checkout page. outcome: paid, declined,
    invalid_card, complete (paid before), expired."""

    outcome: str
    redirect_url: str | None = None


def pay(
    session: Session,
    session_id: str,
    card_number: str,
    email: str,
    *,
    api_version: str,
    fees: Fees,
) -> PayResult:
    """Pay an open session with a test card: the Stripe objects and the
    events Stripe would send (stored, not yet delivered). Flushes only."""
    row = session.get(SandboxObject, session_id, with_for_update=True)
    if row is None or row.type != "checkout.session":
        raise PaymentsError("not_found", "No such checkout.session")
    checkout_session: dict[str, Any] = json.loads(row.json)
    success_url = str(checkout_session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)
    now = utcnow()
    if checkout_session["status"] == "complete":
        return PayResult("complete", success_url)
    if checkout_session["status"] == "expired" or checkout_session["expires_at"] < ts(now):
        return PayResult("expired")
    number = "".join(ch for ch in card_number if ch.isdigit())
    if number not in (SUCCEEDING_CARD, DECLINED_CARD):
        return PayResult("invalid_card")
    params = store.require(session, f"{session_id}:params")
    events = Events(api_version, now)
    if number == DECLINED_CARD:
        _decline(session, checkout_session, params, email, events, now)
        store.save_events(session, events.items, events.now)
        return PayResult("declined")
    customer = _customer_for(session, checkout_session, email, events, now)
    checkout_session["customer"] = customer["id"] if customer else None
    checkout_session["customer_details"] = objects.customer_details(email)
    if checkout_session["mode"] == "subscription":
        assert customer is not None  # made above for every subscription
        _subscribe(session, checkout_session, params, customer, email, events, now, fees)
    else:
        _pay_once(session, checkout_session, params, email, events, now, fees)
    session.flush()
    store.save_events(session, events.items, events.now)
    return PayResult("paid", success_url)


def _customer_for(
    session: Session,
    checkout_session: dict[str, Any],
    email: str,
    events: Events,
    now: datetime,
) -> dict[str, Any] | None:
    customer_id = checkout_session.get("customer")
    if customer_id:
        existing = store.load(session, customer_id)
        if existing is not None:
            return existing
        # A customer this sandbox never made (say, from Stripe test mode in
        # the same database): adopt its id rather than fail the donor.
        adopted = objects.customer(customer_id, email, now)
        store.save(session, adopted, now)
        return adopted
    needs_customer = checkout_session["mode"] == "subscription" or (
        checkout_session.get("customer_creation") == "always"
    )
    if not needs_customer:
        return None
    customer = objects.customer(new_id("cus"), email, now)
    store.save(session, customer, now)
    events.add("customer.created", customer)
    return customer


def _decline(
    session: Session,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    email: str,
    events: Events,
    now: datetime,
) -> None:
    intent = _intent_for(session, checkout_session, params, now)
    charge = objects.charge(intent, email, now, DECLINED_CARD)
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
    store.save(session, charge, now)
    store.save(session, intent, now)
    if checkout_session["mode"] == "payment":
        checkout_session["payment_intent"] = intent["id"]
        store.save(session, checkout_session, now)
    events.add("charge.failed", charge)
    events.add("payment_intent.payment_failed", intent)


def _intent_for(
    session: Session,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The session's payment intent (a retry after a decline reuses it)."""
    if checkout_session["mode"] == "payment" and checkout_session.get("payment_intent"):
        existing = store.load(session, checkout_session["payment_intent"])
        if existing is not None:
            return existing
    metadata = params["payment_intent_metadata"] if checkout_session["mode"] == "payment" else {}
    description = "Subscription creation" if checkout_session["mode"] == "subscription" else None
    return objects.payment_intent(
        checkout_session["amount_total"],
        checkout_session["currency"],
        checkout_session.get("customer"),
        metadata,
        description,
        now,
    )


def _pay_once(
    session: Session,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    email: str,
    events: Events,
    now: datetime,
    fees: Fees,
) -> None:
    intent = _intent_for(session, checkout_session, params, now)
    intent["customer"] = checkout_session["customer"]
    intent["last_payment_error"] = None
    charge, _transaction = _succeed(session, intent, email, events, now, fees)
    checkout_session.update(status="complete", payment_status="paid")
    checkout_session["payment_intent"] = intent["id"]
    store.save(session, checkout_session, now)
    events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
    events.add("payment_intent.succeeded", intent)
    events.add("checkout.session.completed", checkout_session)
    events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})


def _succeed(
    session: Session,
    intent: dict[str, Any],
    email: str,
    events: Events,
    now: datetime,
    fees: Fees,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A successful charge on `intent` and its balance transaction. The
    charge is captured asynchronously, as under automatic_async: its
    balance transaction appears after charge.succeeded."""
    charge = objects.charge(intent, email, now, SUCCEEDING_CARD)
    events.charge_before_settlement = copy.deepcopy(charge)
    transaction = objects.balance_transaction(charge, now, fees)
    charge["balance_transaction"] = transaction["id"]
    intent.update(status="succeeded", amount_received=intent["amount"])
    intent["latest_charge"] = charge["id"]
    intent["payment_method"] = charge["payment_method"]
    store.save(session, charge, now)
    store.save(session, transaction, now)
    store.save(session, intent, now)
    return charge, transaction


def _subscribe(
    session: Session,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    customer: dict[str, Any],
    email: str,
    events: Events,
    now: datetime,
    fees: Fees,
) -> None:
    subscription_id = new_id("sub")
    subscription = billing.subscription(subscription_id, checkout_session, params, customer, now)
    charge, intent, invoice, invoice_payment = _invoice(
        session, subscription, "subscription_create", email, events, now, fees
    )
    store.save(session, subscription, now)
    checkout_session.update(
        status="complete",
        payment_status="paid",
        subscription=subscription_id,
        invoice=invoice["id"],
    )
    store.save(session, checkout_session, now)
    events.add("customer.subscription.created", subscription)
    events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
    events.add("payment_intent.succeeded", intent)
    events.add("invoice_payment.paid", invoice_payment)
    events.add("invoice.paid", invoice)
    events.add("invoice.payment_succeeded", invoice)
    events.add("checkout.session.completed", checkout_session)
    events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})


def _invoice(
    session: Session,
    subscription: dict[str, Any],
    billing_reason: str,
    email: str,
    events: Events,
    now: datetime,
    fees: Fees,
    billed_period: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A paid invoice for the subscription's current period, with its
    invoice payment, payment intent, charge and balance transaction.
    `billed_period` is the invoice's own period_start/end: the period just
    ended for a renewal, the creation moment for the first invoice."""
    invoice_id = new_id("in")
    total = billing.period_total(subscription)
    description = (
        "Subscription creation"
        if billing_reason == "subscription_create"
        else "Subscription update"
    )
    intent = objects.payment_intent(
        total, subscription["currency"], subscription["customer"], {}, description, now
    )
    charge, _transaction = _succeed(session, intent, email, events, now, fees)
    invoice = billing.invoice(invoice_id, subscription, billing_reason, email, now, billed_period)
    invoice_payment = billing.invoice_payment(invoice, intent["id"], now)
    subscription["latest_invoice"] = invoice_id
    store.save(session, invoice, now)
    store.save(session, invoice_payment, now)
    return charge, intent, invoice, invoice_payment


def active_subscription_ids(session: Session) -> list[str]:
    rows = session.scalars(
        select(SandboxObject.json)
        .where(SandboxObject.type == "subscription")
        .order_by(SandboxObject.created_at, SandboxObject.id)
    )
    found = [json.loads(raw) for raw in rows]
    return [sub["id"] for sub in found if sub["status"] in ("active", "past_due")]


def renew(
    session: Session, subscription_id: str, *, api_version: str, fees: Fees
) -> dict[str, Any]:
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
    events = Events(api_version, now)
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
        while ts(add_interval(anchor, interval, count * periods)) <= start:
            periods += 1
        item["current_period_start"] = start
        item["current_period_end"] = ts(add_interval(anchor, interval, count * periods))
    customer = store.load(session, subscription["customer"]) or {}
    email = customer.get("email") or ""
    charge, intent, invoice, invoice_payment = _invoice(
        session, subscription, "subscription_cycle", email, events, now, fees, billed_period
    )
    store.save(session, subscription, now)
    events.add("customer.subscription.updated", subscription, previous_attributes=previous)
    events.add("charge.succeeded", charge, snapshot=events.charge_before_settlement)
    events.add("payment_intent.succeeded", intent)
    events.add("invoice_payment.paid", invoice_payment)
    events.add("invoice.paid", invoice)
    events.add("invoice.payment_succeeded", invoice)
    events.add("charge.updated", charge, previous_attributes={"balance_transaction": None})
    session.flush()
    store.save_events(session, events.items, events.now)
    return invoice
