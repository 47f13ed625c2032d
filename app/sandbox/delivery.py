"""Delivery of the sandbox's stored events to our own webhook endpoint:
Stripe's signature scheme, the signed HTTP POST, and the retry of whatever
is still undelivered. Never builds events and never runs inside the
caller's transaction: it opens its own short ones, only to mark delivery."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field

import requests
from sqlalchemy import select, update

from app.clock import utcnow
from app.db import Database
from app.sandbox.models import SandboxObject
from app.sandbox.objects import ts

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: t=<unix>,v1=hex(HMAC-SHA256(secret, "{t}." + body))."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@dataclass
class DeliveryReport:
    delivered: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pending == 0


def deliver_pending(database: Database, webhook_url: str, webhook_secret: str) -> DeliveryReport:
    """POST every undelivered event, oldest first, signed, to the webhook
    URL. A 2xx marks it delivered; anything else keeps it for the next
    try. Stops at the first connection failure (the receiver is down).
    Must not be called inside a transaction on the app's database."""
    report = DeliveryReport()
    with database.session() as session:
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
        problem = _post(webhook_url, webhook_secret, body.encode())
        if problem is None:
            delivered.append(event_id)
            continue
        report.errors.append(problem)
        if problem.startswith("unreachable"):
            break
    report.pending = len(pending) - len(delivered)
    if delivered:
        with database.session() as session, session.begin():
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
            webhook_url,
            report.errors[-1],
        )
    elif delivered:
        log.info("sandbox: delivered %d event(s) to %s", len(delivered), webhook_url)
    return report


def _post(webhook_url: str, webhook_secret: str, body: bytes) -> str | None:
    header = signature_header(body, webhook_secret, ts(utcnow()))
    try:
        response = requests.post(
            webhook_url,
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
