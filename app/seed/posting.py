"""How the seed's ledger operations are written: `Op` records a call to one of
app.ledger's posting functions; `apply_exact` makes it (the webhook handlers' path),
`draft_entry` and `Writer` build the same entry and write it in batches (COPY on
PostgreSQL). Never invents data, never posts by rules of its own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from app import ledger
from app.clock import utcnow
from app.db import Base
from app.ledger import LedgerError
from app.ledger import totals as ledger_totals

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


# The entry each operation posts: app.ledger's own builder for the function
# of that name, so both paths post by the same rules (tests compare them).
ENTRY_BUILDERS: dict[str, Callable[..., ledger.Entry]] = {
    "recognise_payment": ledger.payment_entry,
    "recognise_refund": ledger.refund_entry,
    "settle": ledger.settlement_entry,
    "post_movement": ledger.movement_entry,
}


def draft_entry(op: Op) -> ledger.Entry:
    """The entry an operation posts, with the same key, lines and checks as
    app.ledger's function of that name."""
    builder = ENTRY_BUILDERS.get(op.name)
    if builder is None:
        raise LedgerError(f"unknown operation {op.name!r}")
    return builder(*op.args, **op.kwargs)


# ---------------------------------------------------------------------------
# Writing rows in batches


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


class Writer:
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
        # Entries written in bulk leave the daily totals behind until `finish`.
        self.totals_stale = False
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
        kept = ledger.checked_lines(draft)
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
        if self.rows.get("journal_entries"):
            self.totals_stale = True
        for name in TABLES:
            rows = self.rows.pop(name, None)
            if not rows:
                continue
            if self.postgres:
                self._copy(name, rows)
            else:
                self.session.execute(insert(_table(name)), rows)
            self.written[name] += len(rows)
        for op in self.ops:
            apply_exact(self.session, op)
        if self.ops:
            self.written["journal_entries"] += len(self.ops)
        self.ops.clear()
        self.session.flush()
        self.move_sequences()

    def finish(self) -> None:
        """After the last flush: the daily totals recomputed from the journal
        once (`ledger_totals.rebuild`, one grouped pass) if entries were
        written in bulk, instead of a pass over the new entries per batch,
        which grew with the journal (a 1M seed spent most of its time there)."""
        if self.totals_stale:
            ledger_totals.rebuild(self.session)
            self.totals_stale = False

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
