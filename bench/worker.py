"""Events per second through the real webhook worker (webhooks.worker.drain)
for a stored backlog of charge events: per charge a charge.succeeded (it is
recognised) and a charge.updated bringing its balance transaction (settled,
fetched from a local stand-in for Stripe's API that answers from memory:
no network). Called by bench/posting.py; loopback PostgreSQL only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "stripe_fixtures3.json"
API_VERSION = "2025-03-31.basil"
START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())


@dataclass
class WorkerRun:
    events: int
    processed: int
    seconds: float
    exact: bool

    @property
    def rate(self) -> float:
        return self.processed / self.seconds


class MemoryStripe:
    """The read-only Stripe calls the handlers may make, answered from the
    balance transactions the backlog refers to; anything else is not found."""

    def __init__(self, balance_transactions: dict[str, dict[str, Any]]) -> None:
        self.balance_transactions = balance_transactions

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        return self.balance_transactions[balance_transaction_id]

    def __getattr__(self, name: str) -> Any:
        from app.payments import PaymentsError

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise PaymentsError("not_found", f"{name} is not in the benchmark's backlog")

        return missing


def _objects() -> dict[str, Any]:
    resources: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def backlog(charges: int, days: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The events of `charges` one-time gifts spread over `days` days, and
    their balance transactions."""
    resources = _objects()
    events: list[dict[str, Any]] = []
    transactions: dict[str, dict[str, Any]] = {}
    for n in range(charges):
        created = START + (n * days * 86400) // charges
        amount = 500 + (n * 7919) % 20000
        fee = amount * 29 // 1000 + 30
        charge_id, txn_id = f"ch_wbench_{n}", f"txn_wbench_{n}"
        transactions[txn_id] = {
            **resources["balance_transaction"],
            "id": txn_id,
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": "usd",
            "source": charge_id,
            "created": created + 86400 * 2,
            "type": "charge",
            "reporting_category": "charge",
            "exchange_rate": None,
            "status": "available",
        }
        charge = {
            **resources["charge"],
            "id": charge_id,
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": True,
            "paid": True,
            "refunded": False,
            "disputed": False,
            "created": created,
            "currency": "usd",
            "customer": None,
            "payment_intent": f"pi_wbench_{n}",
            "balance_transaction": None,
            "metadata": {"frequency": "once"},
            "status": "succeeded",
            "description": None,
            "receipt_email": f"bench.donor{n}@example.org",
            "billing_details": {
                **resources["charge"]["billing_details"],
                "email": f"bench.donor{n}@example.org",
                "name": "Bench Donor",
            },
        }
        charge.pop("refunds", None)
        charge.pop("invoice", None)
        for number, (event_type, obj, extra) in enumerate(
            (
                ("charge.succeeded", charge, {}),
                (
                    "charge.updated",
                    {**charge, "balance_transaction": txn_id},
                    {"previous_attributes": {"balance_transaction": None}},
                ),
            )
        ):
            events.append(
                {
                    "id": f"evt_wbench_{n}_{number}",
                    "object": "event",
                    "api_version": API_VERSION,
                    "created": created + number,
                    "data": {"object": obj, **extra},
                    "livemode": False,
                    "pending_webhooks": 1,
                    "request": {"id": None, "idempotency_key": None},
                    "type": event_type,
                }
            )
    return events, transactions


def drain_backlog(url: str, charges: int, days: int) -> WorkerRun:
    """Store the backlog in the inbox (untimed), then time one worker
    draining it; compare the totals with the journal afterwards."""
    from app import ledger
    from app.clock import utcnow
    from app.db import Database
    from app.ledger import totals as ledger_totals
    from webhooks.inbox import read_event, store_event
    from webhooks.worker import RetryPolicy, drain

    events, transactions = backlog(charges, days)
    database = Database(url)
    try:
        with database.session() as session:
            for event in events:
                payload = json.dumps(event, separators=(",", ":"))
                store_event(session, read_event(payload, event), skipped=False, now=utcnow())
            session.commit()
        started = time.perf_counter()
        outcomes = drain(database, MemoryStripe(transactions), RetryPolicy())
        seconds = time.perf_counter() - started
        processed = sum(1 for o in outcomes if o.status == "processed")
        with database.session() as session:
            exact = (
                processed == len(events)
                and ledger_totals.differences(session) == []
                and ledger.verify(session) == []
            )
        return WorkerRun(len(events), processed, seconds, exact)
    finally:
        database.dispose()
