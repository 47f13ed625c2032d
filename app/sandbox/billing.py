"""Builders of the sandbox's Stripe-shaped billing objects: price,
subscription (with its items), invoice (with its lines) and invoice payment,
and the calendar arithmetic of billing periods. Pure: never touches the
database or the network, never charges (the caller makes the payment)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Any

from app.sandbox.objects import new_id, ts


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


def price(line: dict[str, Any], interval: str, now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("price"),
        "object": "price",
        "active": False,  # inline price_data makes archived prices, as in Stripe
        "billing_scheme": "per_unit",
        "created": ts(now),
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


def subscription(
    subscription_id: str,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    customer: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A new active subscription to the session's line items, one period long."""
    interval = params["interval"]
    period_end = add_interval(now, interval)
    items = []
    for line in params["line_items"]:
        items.append(
            {
                "id": new_id("si"),
                "object": "subscription_item",
                "created": ts(now),
                "current_period_start": ts(now),
                "current_period_end": ts(period_end),
                "discounts": [],
                "metadata": {},
                "price": price(line, interval, now),
                "quantity": line["quantity"],
                "subscription": subscription_id,
                "tax_rates": [],
            }
        )
    return {
        "id": subscription_id,
        "object": "subscription",
        "billing_cycle_anchor": ts(now),
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": ts(now),
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
        "start_date": ts(now),
        "status": "active",
        "trial_end": None,
        "trial_start": None,
    }


def period_total(subscription: dict[str, Any]) -> int:
    """What one period of the subscription's current items costs, minor units."""
    items = subscription["items"]["data"]
    return sum(int(item["price"]["unit_amount"]) * int(item["quantity"]) for item in items)


def invoice(
    invoice_id: str,
    subscription: dict[str, Any],
    billing_reason: str,
    email: str,
    now: datetime,
    billed_period: tuple[int, int] | None,
) -> dict[str, Any]:
    """The paid invoice of the subscription's current items. `billed_period`
    is its own period_start/end (None: the creation moment)."""
    items = subscription["items"]["data"]
    currency = subscription["currency"]
    total = period_total(subscription)
    period_start = items[0]["current_period_start"]
    period_end = items[0]["current_period_end"]
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
    return {
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
        "created": ts(now),
        "currency": currency,
        "customer": subscription["customer"],
        "customer_email": email or None,
        "description": None,
        "effective_at": ts(now),
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
        "period_end": billed_period[1] if billed_period else ts(now),
        "period_start": billed_period[0] if billed_period else ts(now),
        "status": "paid",
        "status_transitions": {
            "finalized_at": ts(now),
            "marked_uncollectible_at": None,
            "paid_at": ts(now),
            "voided_at": None,
        },
        "subtotal": total,
        "total": total,
    }


def invoice_payment(
    invoice: dict[str, Any], payment_intent_id: str, now: datetime
) -> dict[str, Any]:
    """The payment of a whole invoice by one payment intent."""
    total = invoice["amount_paid"]
    currency = invoice["currency"]
    invoice_id = invoice["id"]
    return {
        "id": new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": total,
        "amount_requested": total,
        "created": ts(now),
        "currency": currency,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent_id},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": ts(now)},
    }
