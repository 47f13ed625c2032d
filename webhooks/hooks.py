"""The pieces of this package that app code may use (`app.payments.Webhooks`),
bundled here so that `app` imports `webhooks` only inside create_app (and the
worker, which is ours, hands them to the scheduled sync). Builds nothing at
import time and holds no logic of its own beyond a replay of one event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.db import Database
from app.payments import Webhooks
from webhooks.handlers import apply_event
from webhooks.inbox import list_failed, reset_for_replay
from webhooks.mapping import balance_txn, charge
from webhooks.worker import RetryPolicy, process_next


def replay_one(
    database: Database, payments: Any, settings: Mapping[str, Any], stripe_event_id: str
) -> str | None:
    """Process one stored (already reset) event now, as `donations events
    replay` does: "type: status", or None when another worker claimed it."""
    policy = RetryPolicy.from_settings(settings)
    outcome = process_next(database, payments, policy, stripe_event_id=stripe_event_id)
    return None if outcome is None else f"{outcome.type}: {outcome.status}"


def webhooks() -> Webhooks:
    return Webhooks(
        apply_event=apply_event,
        balance_txn=balance_txn,
        charge=charge,
        list_failed=list_failed,
        reset_for_replay=reset_for_replay,
        replay=replay_one,
    )
