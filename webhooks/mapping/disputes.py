"""Disputes: their outcome and their balance transactions (the withdrawal with
its fee, a reinstatement), listed in full on the dispute. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.ledger import BalanceTxn
from webhooks.mapping.balance import balance_txn
from webhooks.mapping.common import Json, at, currency_of, object_id

DISPUTE_OUTCOMES = {"won": "won", "lost": "lost", "warning_closed": "warning_closed"}


@dataclass(frozen=True)
class DisputeFacts:
    id: str
    charge_id: str | None
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    created_at: datetime
    balance_transactions: tuple[BalanceTxn, ...]

    @property
    def outcome(self) -> str | None:
        return DISPUTE_OUTCOMES.get(self.status)


def dispute(obj: Json) -> DisputeFacts:
    txns = tuple(
        balance_txn(t) for t in obj.get("balance_transactions") or [] if isinstance(t, dict)
    )
    return DisputeFacts(
        id=str(obj["id"]),
        charge_id=object_id(obj.get("charge")),
        amount_minor=int(obj["amount"]),
        currency=currency_of(obj["currency"]),
        status=str(obj.get("status")),
        reason=obj.get("reason"),
        created_at=at(obj["created"]),
        balance_transactions=txns,
    )


def dispute_kind(txn: BalanceTxn) -> str:
    """A dispute's balance transaction: money out is a withdrawal (`dispute`),
    money back a reinstatement (`dispute_reversal`)."""
    if txn.reporting_category == "dispute_reversal":
        return "dispute_reversal"
    if txn.reporting_category == "dispute":
        return "dispute"
    return "dispute" if txn.amount_minor < 0 else "dispute_reversal"
