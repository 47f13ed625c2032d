"""Subscriptions: status, amount and interval (items' prices now, `plan` in old
versions), and the period end (on the items since 2025-03-31). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhooks.mapping.common import Json, currency_of, metadata_of, object_id, to_datetime


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
    return total, currency_of(currency), interval


def subscription(obj: Json) -> SubscriptionFacts:
    amount, currency, interval = _recurring_amount(obj)
    items = (obj.get("items") or {}).get("data") or []
    period_ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
    period_end = max(period_ends) if period_ends else obj.get("current_period_end")
    return SubscriptionFacts(
        id=str(obj["id"]),
        status=str(obj.get("status")),
        customer_id=object_id(obj.get("customer")),
        checkout_id=metadata_of(obj).get("checkout_id"),
        amount_minor=amount,
        currency=currency or (currency_of(obj["currency"]) if obj.get("currency") else None),
        interval=interval,
        current_period_end=to_datetime(period_end),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        canceled_at=to_datetime(obj.get("canceled_at")),
        ended_at=to_datetime(obj.get("ended_at")),
        livemode=bool(obj.get("livemode")),
    )
