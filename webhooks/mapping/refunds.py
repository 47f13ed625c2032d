"""Refunds, and the refunds old API versions (before 2022-11-15) list on a
charge. Never derived from a charge's `amount_refunded`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhooks.mapping.balance import TxnRef, txn_ref
from webhooks.mapping.common import Json, at, currency_of, object_id


@dataclass(frozen=True)
class RefundFacts:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    created_at: datetime
    balance_transaction: TxnRef | None
    failure_balance_transaction: TxnRef | None


def refund(obj: Json) -> RefundFacts:
    return RefundFacts(
        id=str(obj["id"]),
        charge_id=object_id(obj.get("charge")),
        payment_intent_id=object_id(obj.get("payment_intent")),
        amount_minor=int(obj["amount"]),
        currency=currency_of(obj["currency"]),
        status=str(obj.get("status") or "pending"),
        reason=obj.get("reason"),
        created_at=at(obj["created"]),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        failure_balance_transaction=txn_ref(obj.get("failure_balance_transaction")),
    )


def refunds_listed_on_charge(obj: Json) -> list[RefundFacts]:
    """Old versions (before 2022-11-15) include `charge.refunds.data`: real
    refund objects, each with its own id, so they may be posted like refund
    events (never derived from `amount_refunded`)."""
    listed = (obj.get("refunds") or {}).get("data") or []
    return [refund(r) for r in listed if r.get("object") == "refund"]
