"""Payouts as an accountant reads them: which balance transactions an automatic
payout paid out (kept from Stripe's listing: `link_transactions`), its record,
and the ledger CSV's rows for them (`PayoutFilter`, the shape the CSV paths of
app.ledger.export take). No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app import ledger
from app.db import insert_for
from app.ledger.records import Payout
from app.reconcile.models import PayoutTransaction


def link_transactions(session: Session, payout_id: str, txn_ids: Iterable[str]) -> None:
    """Remember that these balance transactions were paid out by `payout_id`
    (once each, however often Stripe is asked)."""
    values = [
        {"stripe_payout_id": payout_id, "stripe_balance_transaction_id": txn_id}
        for txn_id in dict.fromkeys(txn_ids)
    ]
    if values:
        statement = insert_for(session)(PayoutTransaction).values(values)
        session.execute(
            statement.on_conflict_do_nothing(
                index_elements=["stripe_payout_id", "stripe_balance_transaction_id"]
            )
        )


@dataclass(frozen=True)
class PayoutFilter:
    """The ledger CSV's rows whose balance transaction one payout paid out."""

    payout_id: str

    def rows(self) -> Any:
        return ledger.rows_query().subquery("r")

    def apply(self, query: Select[Any], rows: Any) -> Select[Any]:
        inside = select(PayoutTransaction.stripe_balance_transaction_id).where(
            PayoutTransaction.stripe_payout_id == self.payout_id
        )
        return query.where(rows.c.balance_transaction.in_(inside))


def payout_rows(session: Session, payout: PayoutFilter) -> Iterator[ledger.Row]:
    rows = payout.rows()
    query = payout.apply(select(rows), rows).order_by(rows.c.occurred_at, rows.c.key)
    for result in session.execute(query.execution_options(yield_per=1000)):
        yield ledger.row_from(result)


def payout_csv_rows(session: Session, payout: PayoutFilter) -> Iterator[list[str]]:
    for row in payout_rows(session, payout):
        yield ledger.format_row(row)


def payout_record(session: Session, payout_id: str) -> Payout | None:
    return session.scalars(select(Payout).where(Payout.stripe_payout_id == payout_id)).first()


def linked_count(session: Session, payout_id: str) -> int:
    return len(
        session.scalars(
            select(PayoutTransaction.id).where(PayoutTransaction.stripe_payout_id == payout_id)
        ).all()
    )
