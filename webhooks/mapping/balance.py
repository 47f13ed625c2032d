"""Balance transactions (txn_...): their figures, whether a payload sent the id
or the expanded object. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.ledger import BalanceTxn
from webhooks.mapping.common import Json, at, currency_of, object_id


def balance_txn(obj: Json) -> BalanceTxn:
    """A balance transaction (txn_...) object's figures."""
    return BalanceTxn(
        id=str(obj["id"]),
        type=str(obj.get("type") or "adjustment"),
        currency=currency_of(obj["currency"]),
        amount_minor=int(obj["amount"]),
        fee_minor=int(obj.get("fee") or 0),
        net_minor=int(obj["net"]),
        created_at=at(obj["created"]),
        source=object_id(obj.get("source")),
        reporting_category=obj.get("reporting_category"),
    )


@dataclass(frozen=True)
class TxnRef:
    """A balance transaction as a payload has it: its id, and its figures when
    the payload expanded it."""

    id: str
    expanded: BalanceTxn | None = None


def txn_ref(value: Any) -> TxnRef | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return TxnRef(str(value["id"]), balance_txn(value) if "amount" in value else None)
    return TxnRef(str(value))
