"""A donor's own changes to a sandbox membership, as Stripe makes them:
subscription updates (cancel at period end, resume, a new inline price) with
the `customer.subscription.updated` event Stripe sends, and billing portal
sessions that lead to a sandbox page. Through the caller's session (flushes
only); never commits, never delivers, moves no money.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.payments import PaymentsError
from app.sandbox import billing, store
from app.sandbox.models import SandboxObject
from app.sandbox.objects import Events, new_id, ts

ENDED = ("canceled", "incomplete_expired")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def update_subscription(
    session: Session,
    subscription_id: str,
    params: dict[str, Any],
    *,
    idempotency_key: str,
    api_version: str,
) -> dict[str, Any]:
    """Apply `params` (cancel_at_period_end, cancellation_details, items with
    price_data, metadata, proration_behavior) and store the event. The same
    key with the same parameters answers the first response again.

    Unlike Stripe, a switch between monthly and annual bills nothing at once:
    the new price is billed at the next `donations sandbox renew`."""
    remembered = store.remembered_response(session, idempotency_key, params)
    if remembered is not None:
        return remembered
    row = session.get(SandboxObject, subscription_id, with_for_update=True)
    if row is None or row.type != "subscription":
        raise PaymentsError("not_found", "No such subscription")
    subscription: dict[str, Any] = json.loads(row.json)
    if subscription["status"] in ENDED:
        raise PaymentsError("invalid", f"subscription is {subscription['status']}")
    now = utcnow()
    previous: dict[str, Any] = {}
    if "cancel_at_period_end" in params:
        cancel = _flag(params["cancel_at_period_end"])
        previous["cancel_at_period_end"] = subscription["cancel_at_period_end"]
        previous["cancel_at"] = subscription.get("cancel_at")
        previous["canceled_at"] = subscription.get("canceled_at")
        period_end = subscription["items"]["data"][0]["current_period_end"]
        subscription["cancel_at_period_end"] = cancel
        subscription["cancel_at"] = period_end if cancel else None
        subscription["canceled_at"] = ts(now) if cancel else None
        details = dict(params.get("cancellation_details") or {})
        subscription["cancellation_details"] = {
            "comment": details.get("comment") if cancel else None,
            "feedback": details.get("feedback") if cancel else None,
            "reason": "cancellation_requested" if cancel else None,
        }
    if "items" in params:
        previous["items"] = copy.deepcopy(subscription["items"])
        by_id = {item["id"]: item for item in subscription["items"]["data"]}
        for change in params["items"]:
            item = by_id.get(change.get("id"))
            if item is None:
                raise PaymentsError("invalid", "No such subscription item")
            data = change.get("price_data")
            if data:
                interval = data["recurring"]["interval"]
                line = {
                    "currency": data["currency"],
                    "product": data["product"],
                    "unit_amount": int(data["unit_amount"]),
                }
                item["price"] = billing.price(line, interval, now)
    if "metadata" in params:
        previous["metadata"] = dict(subscription["metadata"])
        subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
    store.save(session, subscription, now)
    events = Events(api_version, now)
    events.add("customer.subscription.updated", subscription, previous_attributes=previous)
    session.flush()
    store.save_events(session, events.items, events.now)
    store.remember_response(session, idempotency_key, params, subscription, now)
    session.flush()
    return copy.deepcopy(subscription)


def create_portal_session(
    session: Session, params: dict[str, Any], *, idempotency_key: str, public_base_url: str
) -> dict[str, Any]:
    """A billing portal session whose `url` is the sandbox's own page."""
    remembered = store.remembered_response(session, idempotency_key, params)
    if remembered is not None:
        return remembered
    customer_id = str(params.get("customer") or "")
    if store.load(session, customer_id) is None:
        raise PaymentsError("not_found", "No such customer")
    now = utcnow()
    portal_id = new_id("bps_test")
    portal = {
        "id": portal_id,
        "object": "billing_portal.session",
        "configuration": "bpc_sandbox",
        "created": ts(now),
        "customer": customer_id,
        "flow": params.get("flow_data"),
        "livemode": False,
        "locale": params.get("locale"),
        "on_behalf_of": None,
        "return_url": params.get("return_url"),
        "url": f"{public_base_url}/sandbox/billing_portal/{portal_id}",
    }
    store.save(session, portal, now)
    store.remember_response(session, idempotency_key, params, portal, now)
    session.flush()
    return copy.deepcopy(portal)
