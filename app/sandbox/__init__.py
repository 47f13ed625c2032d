"""The offline payments sandbox: a small fake Stripe for development without a
STRIPE_SECRET_KEY, answering as `SandboxPayments` and delivering signed events
to our own webhook endpoint. Owns `sandbox_allowed`, the one gate; never used in
production or when a Stripe key is set. Moves no money. Never logs emails.
Its core (models, objects, store, charging, billing, delivery, payments)
imports no Flask; views (the checkout page) and cli (`donations sandbox`) are
its web edge."""

from __future__ import annotations

from typing import Any

from app.sandbox.billing import add_interval
from app.sandbox.charging import DECLINED_CARD, SUCCEEDING_CARD, PayResult
from app.sandbox.delivery import DELIVERY_TIMEOUT_SECONDS, DeliveryReport, signature_header
from app.sandbox.objects import (
    AVAILABLE_AFTER,
    SESSION_LIFETIME,
    new_id,
    processing_fee,
)
from app.sandbox.payments import SandboxPayments

__all__ = [
    "AVAILABLE_AFTER",
    "DECLINED_CARD",
    "DELIVERY_TIMEOUT_SECONDS",
    "SESSION_LIFETIME",
    "SUCCEEDING_CARD",
    "DeliveryReport",
    "PayResult",
    "SandboxPayments",
    "add_interval",
    "new_id",
    "processing_fee",
    "sandbox_allowed",
    "signature_header",
]


def sandbox_allowed(config: dict[str, Any]) -> bool:
    """The sandbox may stand in for Stripe: no key, not production, enabled."""
    if config.get("STRIPE_SECRET_KEY"):
        return False
    if config.get("APP_ENV") == "production":
        return False
    return bool(config.get("SANDBOX_ENABLED", False))
