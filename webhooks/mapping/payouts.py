"""Payouts: amount, status, arrival, and their balance transactions (the payout's
own and, when it fails, the failure's). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhooks.mapping.balance import TxnRef, txn_ref
from webhooks.mapping.common import Json, at, currency_of, to_datetime


@dataclass(frozen=True)
class PayoutFacts:
    id: str
    amount_minor: int
    currency: str
    status: str
    arrival_at: datetime | None
    created_at: datetime
    balance_transaction: TxnRef | None
    failure_balance_transaction: TxnRef | None


def payout(obj: Json) -> PayoutFacts:
    return PayoutFacts(
        id=str(obj["id"]),
        amount_minor=int(obj["amount"]),
        currency=currency_of(obj["currency"]),
        status=str(obj.get("status")),
        arrival_at=to_datetime(obj.get("arrival_date")),
        created_at=at(obj["created"]),
        balance_transaction=txn_ref(obj.get("balance_transaction")),
        failure_balance_transaction=txn_ref(obj.get("failure_balance_transaction")),
    )
