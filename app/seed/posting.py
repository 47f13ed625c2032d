"""How the seed's ledger operations are written: `Op` records a call to one of
app.ledger's posting functions; `apply_exact` makes it (the webhook handlers' path),
`draft_entry` and `_Writer` build the same entry and write it in batches (COPY on
PostgreSQL). Never invents data, never posts by rules of its own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from app import ledger, ledger_totals
from app.clock import utcnow
from app.db import Base
from app.ledger import BalanceTxn, LedgerError, Line, Movement, check_balanced

# Tables written here, parents first (foreign keys), with integer ids we assign.
TABLES = (
    "donors",
    "stripe_customers",
    "checkouts",
    "memberships",
    "payments",
    "invoices",
    "refunds",
    "disputes",
    "payouts",
    "journal_entries",
    "journal_postings",
)
_INTEGER_IDS = tuple(t for t in TABLES if t != "checkouts")

# ---------------------------------------------------------------------------
# Ledger operations: what the webhook handlers would call, recorded as data so
# they can be applied one by one (exact) or prepared in batches (bulk).


@dataclass(frozen=True)
class Op:
    name: str  # recognise_payment, recognise_refund, settle, post_movement
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def apply_exact(session: Session, op: Op) -> None:
    """The posting functions the webhook handlers use, one entry per call."""
    function: Callable[..., bool] = getattr(ledger, op.name)
    function(session, *op.args, **op.kwargs)


@dataclass(frozen=True)
class Draft:
    """An entry as app.ledger.post_entry would write it."""

    key: str
    kind: str
    occurred_at: datetime
    stripe_object_id: str
    movement: Movement
    lines: list[Line]
    donor_id: int | None = None
    stripe_charge_id: str | None = None
    stripe_balance_transaction_id: str | None = None


def draft_entry(op: Op) -> Draft:
    """The entry an operation posts, with the same key, lines and checks as
    app.ledger's function of that name (tests compare the two paths)."""
    kw = op.kwargs
    if op.name == "recognise_payment":
        if kw["kind"] not in ledger.PAYMENT_KINDS:
            raise LedgerError(f"{kw['kind']!r} is not a payment kind")
        revenue = "revenue_donations" if kw["kind"] == "donation" else "revenue_memberships"
        cur, amount = kw["currency"], kw["amount_minor"]
        return Draft(
            f"charge:{kw['charge_id']}",
            kw["kind"],
            kw["occurred_at"],
            kw["charge_id"],
            Movement(cur, amount),
            [Line("stripe_receivable", cur, amount), Line(revenue, cur, -amount)],
            kw["donor_id"],
            kw["charge_id"],
        )
    if op.name == "recognise_refund":
        cur, amount = kw["currency"], kw["amount_minor"]
        return Draft(
            f"refund:{kw['refund_id']}",
            "refund",
            kw["occurred_at"],
            kw["refund_id"],
            Movement(cur, -amount),
            [Line("refunds", cur, amount), Line("stripe_receivable", cur, -amount)],
            kw["donor_id"],
            kw["charge_id"],
        )
    txn: BalanceTxn = op.args[0]
    figures = Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor)
    if op.name == "settle":
        lines = [
            Line("stripe_balance", txn.currency, txn.net_minor),
            Line("fees_processing", txn.currency, txn.fee_minor),
            Line("stripe_receivable", kw["object_currency"], -kw["object_amount_minor"]),
        ]
        if txn.currency != kw["object_currency"]:
            lines = ledger._fx_balance(lines)
        elif txn.amount_minor != kw["object_amount_minor"]:
            raise LedgerError(f"balance transaction {txn.id} does not match {kw['object_id']}")
        return Draft(
            f"balance_transaction:{txn.id}",
            "settlement",
            txn.created_at,
            kw["object_id"],
            figures,
            lines,
            kw["donor_id"],
            kw["charge_id"],
            txn.id,
        )
    if op.name == "post_movement":
        kind = op.args[1]
        counter, fee_account = ledger._STANDALONE[kind]
        return Draft(
            f"balance_transaction:{txn.id}",
            kind,
            txn.created_at,
            kw["object_id"],
            figures,
            [
                Line("stripe_balance", txn.currency, txn.net_minor),
                Line(fee_account, txn.currency, txn.fee_minor),
                Line(counter, txn.currency, -txn.amount_minor),
            ],
            kw.get("donor_id"),
            kw.get("charge_id"),
            txn.id,
        )
    raise LedgerError(f"unknown operation {op.name!r}")


# ---------------------------------------------------------------------------
# Writing rows in batches


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


class _Writer:
    """Buffers rows per table and writes them in one batch per table: COPY on
    PostgreSQL, executemany elsewhere. Ids are assigned here (after the
    largest existing one) so children can point at parents without a round
    trip; PostgreSQL's sequences are moved past them at the end."""

    def __init__(self, session: Session, *, exact: bool) -> None:
        self.session = session
        self.exact = exact
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ops: list[Op] = []
        self.next_id = {
            name: int(session.scalar(select(func.coalesce(func.max(_table(name).c.id), 0))) or 0)
            + 1
            for name in _INTEGER_IDS
        }
        self.written: dict[str, int] = defaultdict(int)
        self.created_at = utcnow()

    def new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)

    def post(self, op: Op) -> None:
        if self.exact:
            self.ops.append(op)
            return
        draft = draft_entry(op)
        if draft.kind not in ledger.ENTRY_KINDS:
            raise LedgerError(f"unknown entry kind {draft.kind!r}")
        if draft.occurred_at.tzinfo is None:
            raise LedgerError("occurred_at must be timezone-aware")
        kept = [line for line in draft.lines if line.amount_minor != 0]
        check_balanced(kept)
        entry_id = self.new_id("journal_entries")
        movement = draft.movement
        self.add(
            "journal_entries",
            {
                "id": entry_id,
                "key": draft.key,
                "kind": draft.kind,
                "occurred_at": draft.occurred_at,
                "created_at": self.created_at,
                "donor_id": draft.donor_id,
                "stripe_object_id": draft.stripe_object_id,
                "stripe_charge_id": draft.stripe_charge_id,
                "stripe_balance_transaction_id": draft.stripe_balance_transaction_id,
                "currency": movement.currency,
                "amount_minor": movement.amount_minor,
                "fee_minor": movement.fee_minor,
                "net_minor": movement.net_minor,
            },
        )
        for line in kept:
            self.add(
                "journal_postings",
                {
                    "id": self.new_id("journal_postings"),
                    "entry_id": entry_id,
                    "account": line.account,
                    "currency": line.currency,
                    "amount_minor": line.amount_minor,
                    "donor_id": draft.donor_id,
                },
            )

    def flush(self) -> None:
        entries = self.rows.get("journal_entries")
        new_entries = (entries[0]["id"], entries[-1]["id"]) if entries else None
        for name in TABLES:
            rows = self.rows.pop(name, None)
            if not rows:
                continue
            if self.postgres:
                self._copy(name, rows)
            else:
                self.session.execute(insert(_table(name)), rows)
            self.written[name] += len(rows)
        if new_entries is not None:  # the daily totals move with the batch's entries
            ledger_totals.add_entries(self.session, *new_entries)
        for op in self.ops:
            apply_exact(self.session, op)
        if self.ops:
            self.written["journal_entries"] += len(self.ops)
        self.ops.clear()
        self.session.flush()
        self.move_sequences()

    def _copy(self, name: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        raw = self.session.connection().connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([row[column] for column in columns])

    def move_sequences(self) -> None:
        if not self.postgres:
            return
        for name in _INTEGER_IDS:
            table = _table(name)
            after = select(func.coalesce(func.max(table.c.id), 0) + 1).scalar_subquery()
            self.session.execute(
                select(func.setval(func.pg_get_serial_sequence(name, "id"), after, False))
            )
