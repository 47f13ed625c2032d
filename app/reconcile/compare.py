"""The reconcile report's comparison, in bulk: Stripe's balance transactions
of one report are staged in a temporary table on one connection (COPY on
PostgreSQL, a page at a time), and compared with the journal by a handful of
set queries, so memory holds one page and the differences, never a row
object per transaction. Also the `Report` those queries fill. No Flask, no
`stripe`, no commits but the staging connection's own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from app import ledger
from app.db import Database
from app.ledger import JournalEntry
from app.money import format_plain
from app.reconcile.sync import Window

Json = dict[str, Any]
PAYOUT_TYPES = frozenset(["payout", "payout_cancel", "payout_failure"])
PAYMENT_TYPES = frozenset(["charge", "payment"])
UNSETTLED_AFTER = timedelta(days=1)

# Stripe's side of one report: one row per listed balance transaction, in
# listing order (`seq`). Temporary, so it lives and dies with its connection.
STAGE = Table(
    "reconcile_stripe_txns",
    MetaData(),
    Column("seq", Integer, nullable=False),
    Column("id", String(255), nullable=False),
    Column("type", String(64), nullable=False),
    Column("category", String(64)),
    Column("source", String(255)),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("net", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)
STAGE_COLUMNS = [column.name for column in STAGE.columns]
STAGE_BATCH = 5000  # rows per COPY


@dataclass
class Totals:
    gross: int = 0
    fees: int = 0
    net: int = 0

    def as_json(self, currency: str) -> dict[str, str]:
        return {
            "gross": format_plain(self.gross, currency),
            "fees": format_plain(self.fees, currency),
            "net": format_plain(self.net, currency),
        }


def txn_kind(txn: ledger.BalanceTxn) -> str:
    """ "payment", "payout", "stripe_fee" or "other": how a balance
    transaction counts in the totals (payouts leave them out)."""
    if txn.type in PAYOUT_TYPES:
        return "payout"
    if txn.type in PAYMENT_TYPES:
        return "payment"
    if txn.reporting_category == "fee" or ledger.OTHER_TYPES.get(txn.type) == "stripe_fee":
        return "stripe_fee"
    return "other"


@dataclass
class Report:
    window: Window
    stripe: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    ledger: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_category: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    missing_in_ledger: list[Json] = field(default_factory=list)
    unknown_to_stripe: list[Json] = field(default_factory=list)
    mismatches: list[Json] = field(default_factory=list)
    unsettled: list[Json] = field(default_factory=list)
    payouts: list[Json] = field(default_factory=list)
    unlisted: list[Json] = field(default_factory=list)  # lists Stripe would not give
    listed: int = 0
    posted: int = 0

    @property
    def differences(self) -> int:
        bad_payouts = sum(1 for p in self.payouts if p["automatic"] and not p["ties_out"])
        return (
            len(self.missing_in_ledger)
            + len(self.unknown_to_stripe)
            + len(self.mismatches)
            + len(self.unsettled)
            + bad_payouts
        )

    def as_json(self, zone: Any) -> Json:
        def day(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(zone).date().isoformat()

        currencies = sorted(set(self.stripe) | set(self.ledger))
        return {
            "window": {"since": day(self.window.since), "until": day(self.window.until)},
            "differences": self.differences,
            "currencies": {
                cur: {
                    "stripe": self.stripe[cur].as_json(cur),
                    "ledger": self.ledger[cur].as_json(cur),
                    "stripe_by_category": {
                        category: format_plain(net, cur)
                        for category, net in sorted(self.by_category[cur].items())
                    },
                }
                for cur in currencies
            },
            "missing_in_ledger": self.missing_in_ledger,
            "unknown_to_stripe": self.unknown_to_stripe,
            "mismatches": self.mismatches,
            "unsettled": self.unsettled,
            "payouts": self.payouts,
            "unlisted": self.unlisted,
        }


# -- Stripe's side, staged -----------------------------------------------------


@contextmanager
def staging(database: Database) -> Iterator[Connection]:
    """One connection holding the report's temporary table. Its SQLite
    transactions begin deferred and end after every page, so the postings of
    a sync (other sessions) never wait for it."""
    with database.connect(immediate=False) as conn:
        STAGE.create(conn)
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            STAGE.drop(conn)
            conn.commit()


def stage_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Append rows (STAGE's columns, in order) and commit: COPY on PostgreSQL.
    Callers batch (STAGE_BATCH rows): every call is a few round trips."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        if not conn.in_transaction():
            conn.begin()  # so the commit below ends the COPY's transaction
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {STAGE.name} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    else:
        conn.execute(STAGE.insert(), [dict(zip(STAGE_COLUMNS, row, strict=True)) for row in rows])
    conn.commit()


def stage_row(seq: int, txn: ledger.BalanceTxn) -> tuple[Any, ...]:
    return (
        seq,
        txn.id,
        txn.type,
        txn.reporting_category,
        txn.source,
        txn.currency,
        txn_kind(txn),
        txn.amount_minor,
        txn.fee_minor,
        txn.net_minor,
    )


# -- the comparison, in bulk ------------------------------------------------------


def _in_window(query: Any, column: Any, window: Window) -> Any:
    if window.since is not None:
        query = query.where(column >= window.since)
    if window.until is not None:
        query = query.where(column < window.until)
    return query


def _stripe_side(report: Report, conn: Connection) -> None:
    """Stripe's totals per currency (payouts left out) and net per reporting
    category, in one pass over the staged rows."""
    s = STAGE.c
    category = func.coalesce(s.category, s.type)
    query = select(
        s.currency, category, s.kind, func.sum(s.amount), func.sum(s.fee), func.sum(s.net)
    ).group_by(s.currency, category, s.kind)
    for currency, name, kind, amount, fee, net in conn.execute(query):
        amount, fee, net = int(amount or 0), int(fee or 0), int(net or 0)
        report.by_category[currency][name] += net
        totals = report.stripe[currency]
        if kind == "payout":
            continue
        totals.gross += amount if kind == "payment" else 0
        totals.fees += fee - (amount if kind == "stripe_fee" else 0)
        totals.net += net


def _differences(report: Report, conn: Connection) -> None:
    """Stripe's transactions the ledger lacks, and those whose currency,
    amount, fee or net differ from the ledger's, in one pass, in Stripe's
    listing order."""
    s, j = STAGE.c, JournalEntry
    query = (
        select(
            s.id,
            s.type,
            s.source,
            s.currency,
            j.id,
            j.currency,
            s.amount,
            j.amount_minor,
            s.fee,
            j.fee_minor,
            s.net,
            j.net_minor,
        )
        .outerjoin_from(STAGE, j, j.stripe_balance_transaction_id == s.id)
        .where(
            or_(
                j.id.is_(None),
                j.currency != s.currency,
                j.amount_minor != s.amount,
                j.fee_minor.is_(None),
                j.fee_minor != s.fee,
                j.net_minor.is_(None),
                j.net_minor != s.net,
            )
        )
        .order_by(s.seq)
    )
    for row in conn.execute(query):
        txn_id, kind, source, currency, entry_id, ours_currency = row[:6]
        if entry_id is None:
            report.missing_in_ledger.append(
                {
                    "balance_transaction": txn_id,
                    "type": kind,
                    "source": source,
                    "currency": currency,
                    "amount": format_plain(row[6], currency),
                    "fee": format_plain(row[8], currency),
                }
            )
            continue
        stripe_id = source or txn_id
        if ours_currency != currency:
            report.mismatches.append(
                {
                    "stripe_id": stripe_id,
                    "field": "currency",
                    "stripe": currency,
                    "ledger": ours_currency,
                }
            )
            continue
        for name, theirs, ours in (
            ("amount", row[6], row[7]),
            ("fee", row[8], row[9]),
            ("net", row[10], row[11]),
        ):
            if ours is None or theirs != ours:
                report.mismatches.append(
                    {
                        "stripe_id": stripe_id,
                        "field": name,
                        "stripe": format_plain(theirs, currency),
                        "ledger": "" if ours is None else format_plain(ours, currency),
                    }
                )


def _ledger_side(report: Report, conn: Connection) -> None:
    """The ledger's entries for balance transactions in the window: totals
    (payouts left out, as on Stripe's side), and those Stripe did not list."""
    j = JournalEntry
    with_txn = j.stripe_balance_transaction_id.is_not(None)
    payment = and_(j.kind == "settlement", j.stripe_object_id == j.stripe_charge_id)
    fee = func.coalesce(j.fee_minor, 0)
    totals = _in_window(
        select(
            j.currency,
            func.sum(case((payment, j.amount_minor), else_=0)),
            func.sum(case((j.kind == "stripe_fee", fee - j.amount_minor), else_=fee)),
            func.sum(func.coalesce(j.net_minor, 0)),
        ).where(with_txn, j.kind.not_in(("payout", "payout_failure"))),
        j.occurred_at,
        report.window,
    ).group_by(j.currency)
    for currency, gross, fees, net in conn.execute(totals):
        report.ledger[currency] = Totals(int(gross or 0), int(fees or 0), int(net or 0))
    listed = exists().where(STAGE.c.id == j.stripe_balance_transaction_id)
    unknown = _in_window(
        select(
            j.stripe_object_id, j.stripe_balance_transaction_id, j.kind, j.currency, j.amount_minor
        ).where(with_txn, ~listed),
        j.occurred_at,
        report.window,
    ).order_by(j.occurred_at, j.id)
    for object_id, txn_id, kind, currency, amount in conn.execute(unknown):
        report.unknown_to_stripe.append(
            {
                "stripe_id": object_id,
                "balance_transaction": txn_id,
                "kind": kind,
                "currency": currency,
                "amount": format_plain(amount, currency),
            }
        )


def unsettled(report: Report, session: Session, now: datetime) -> None:
    """Payments recognised more than a day ago whose balance transaction is
    still unknown."""
    payment = aliased(JournalEntry, name="p")
    settlement = aliased(JournalEntry, name="s")
    query = (
        select(payment.stripe_object_id, payment.occurred_at)
        .outerjoin(
            settlement,
            and_(
                settlement.kind == "settlement",
                settlement.stripe_object_id == payment.stripe_object_id,
            ),
        )
        .where(
            payment.kind.in_(ledger.PAYMENT_KINDS),
            settlement.id.is_(None),
            payment.occurred_at < now - UNSETTLED_AFTER,
        )
        .order_by(payment.occurred_at, payment.stripe_object_id)
    )
    for object_id, since in session.execute(_in_window(query, payment.occurred_at, report.window)):
        report.unsettled.append(
            {"stripe_id": object_id, "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )


def compare_staged(report: Report, conn: Connection) -> None:
    """Fill the report's totals and differences from the staged rows."""
    if conn.dialect.name == "postgresql":
        # Statistics for hash joins (autovacuum never sees temporary tables).
        conn.execute(text(f"ANALYZE {STAGE.name}"))
    else:
        # SQLite joins by nested loops: index the staged ids, once loaded.
        conn.execute(text(f"CREATE INDEX ix_{STAGE.name}_id ON {STAGE.name} (id)"))
    conn.commit()
    _stripe_side(report, conn)
    _differences(report, conn)
    _ledger_side(report, conn)
    conn.commit()
