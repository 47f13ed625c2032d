"""Webhook handlers: one module per Stripe object family, each mapping its
events' payloads (webhooks.mapping) to ledger postings (app.ledger) and record
updates (app.ledger.records).

`apply_event` is the one entry point (the worker calls it inside the event's
transaction and commits after). Handlers never commit, call Stripe only
through `StripeLookup` and only for what the payload lacks, and ignore event
types they do not know.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.payments import StripeLookup
from webhooks.handlers import (
    charges,
    checkout,
    disputes,
    invoices,
    payouts,
    refunds,
    subscriptions,
)
from webhooks.handlers.common import Context

Handler = Callable[[Context], None]

__all__ = ["Context", "StripeLookup", "apply_event", "handled_types"]


HANDLERS: dict[str, Handler] = {
    **checkout.HANDLERS,
    **charges.HANDLERS,
    **refunds.HANDLERS,
    **disputes.HANDLERS,
    **invoices.HANDLERS,
    **subscriptions.HANDLERS,
    **payouts.HANDLERS,
}


def handled_types() -> frozenset[str]:
    """The event types that change the ledger or the records."""
    return frozenset(HANDLERS)


def apply_event(session: Session, event: dict[str, Any], stripe: StripeLookup) -> None:
    """Apply one Stripe event (the parsed JSON) to the ledger and records.

    Idempotent: applying an event again, or events in any order, ends in the
    same ledger. Raises on failure (the worker rolls back and retries);
    `PaymentsError("not_found")` from a look-up means retrying cannot help.
    Unknown types: nothing happens."""
    handler = HANDLERS.get(str(event.get("type")))
    if handler is None:
        return
    handler(Context.of(session, event, stripe))
