"""Stripe-shaped test data: objects from Stripe's own fixtures
(tests/fixtures/stripe_fixtures3.json, MIT, from stripe/openapi), events
wrapped around them, and signatures made with Stripe's real algorithm
(HMAC-SHA256 over "{t}.{raw body}")."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from app.settings import load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "stripe_fixtures3.json"
API_VERSION = load_settings(overrides={"APP_ENV": "test", "SECRET_KEY": "x"})["STRIPE_API_VERSION"]


@cache
def _resources() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return data


def stripe_object(name: str, **fields: Any) -> dict[str, Any]:
    """A deep copy of Stripe's example `name` object ("charge", "invoice", ...),
    with `fields` set on top. Replace placeholder values the scenario relies on."""
    obj = copy.deepcopy(_resources()[name])
    obj.update(fields)
    return obj


def make_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str = API_VERSION,
    livemode: bool = False,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": api_version,
        "created": created if created is not None else int(time.time()),
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header value for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def post_event(
    client: Any, event: dict[str, Any], secret: str, timestamp: int | None = None
) -> Any:
    """POST a signed event to /webhooks/stripe through the Flask test client."""
    body = encode(event)
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body, secret, timestamp)},
        content_type="application/json",
    )
