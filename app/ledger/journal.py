"""Posting to the journal: Line, Movement and Entry, check_balanced, and `post`
(once per key), which every movement's posting goes through (app.ledger.movements
builds the entries). Append-only: never updates or deletes an entry or a
posting; no Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import execute_prepared, insert_for
from app.ledger import totals as daily_totals
from app.ledger.models import (
    ACCOUNTS,
    ENTRY_KINDS,
    JournalEntry,
    JournalPosting,
    LedgerError,
)


@dataclass(frozen=True)
class Line:
    """A posting before it is written: account, currency, signed minor units."""

    account: str
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class Movement:
    """A balance transaction's figures (or, before it is known, the charge's)."""

    currency: str
    amount_minor: int
    fee_minor: int | None = None
    net_minor: int | None = None


def check_balanced(lines: Sequence[Line]) -> None:
    """Raise LedgerError unless the lines sum to zero in every currency."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.account not in ACCOUNTS:
            raise LedgerError(f"unknown account {line.account!r}")
        if line.currency != line.currency.lower() or len(line.currency) != 3:
            raise LedgerError(f"currency {line.currency!r} is not a lower-case ISO code")
        totals[line.currency] += line.amount_minor
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"entry does not balance: {unbalanced}")


@dataclass(frozen=True)
class Entry:
    """A journal entry before it is written: its key (once per key), kind, the
    movement's figures and its lines. The `*_entry` builders below make one
    per kind of movement; `post` writes it (and the seed's bulk path writes
    the same entries in batches)."""

    key: str
    kind: str
    occurred_at: datetime
    stripe_object_id: str
    movement: Movement
    lines: tuple[Line, ...]
    donor_id: int | None = None
    stripe_charge_id: str | None = None
    stripe_balance_transaction_id: str | None = None


def checked_lines(entry: Entry) -> list[Line]:
    """The lines an entry writes (zero lines dropped), after the checks every
    posting passes: a known kind, an aware time, balanced per currency."""
    if entry.kind not in ENTRY_KINDS:
        raise LedgerError(f"unknown entry kind {entry.kind!r}")
    if entry.occurred_at.tzinfo is None:
        raise LedgerError("occurred_at must be timezone-aware")
    kept = [line for line in entry.lines if line.amount_minor != 0]
    check_balanced(kept)
    return kept


def entry_row(entry: Entry, now: datetime) -> dict[str, Any]:
    """The journal_entries row of `entry` (posted at `now`), by column."""
    movement = entry.movement
    return {
        "key": entry.key,
        "kind": entry.kind,
        "occurred_at": entry.occurred_at,
        "created_at": now,
        "donor_id": entry.donor_id,
        "stripe_object_id": entry.stripe_object_id,
        "stripe_charge_id": entry.stripe_charge_id,
        "stripe_balance_transaction_id": entry.stripe_balance_transaction_id,
        "currency": movement.currency,
        "amount_minor": movement.amount_minor,
        "fee_minor": movement.fee_minor,
        "net_minor": movement.net_minor,
    }


def post(session: Session, entry: Entry) -> bool:
    """Post an entry once. Returns True if this call posted it, False if its
    key was already there (a duplicate or a concurrent twin).

    The daily totals (derived data, app.ledger.totals) move with the entry,
    in this transaction (`add_posting`); a duplicate adds nothing. A
    settlement or a movement of a settled kind first locks its Stripe object
    (`lock_object`, unless this transaction holds it already), so a movement
    and its settlement posted at the same time each see the other. On
    PostgreSQL the entry, its lines and its totals are one statement, after
    the lock's when the caller has not taken it."""
    kept = checked_lines(entry)
    values = entry_row(entry, utcnow())
    lock = entry.kind in daily_totals.RELATED_KINDS
    if session.get_bind().dialect.name == "postgresql":
        return _insert_in_one_statement(session, values, kept, lock=lock) is not None
    entry_id = _insert_step_by_step(session, values, kept, lock=lock)
    if entry_id is None:
        return False
    daily_totals.add_posting(session, entry_id, entry.stripe_object_id)
    return True


def _insert_step_by_step(
    session: Session, values: dict[str, Any], kept: Sequence[Line], *, lock: bool
) -> int | None:
    if lock:
        daily_totals.lock_object(session, values["stripe_object_id"])
    statement = (
        insert_for(session)(JournalEntry)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(JournalEntry.id)
    )
    entry_id: int | None = session.execute(statement).scalar()
    if entry_id is not None and kept:
        session.execute(
            insert(JournalPosting),
            [
                {
                    "entry_id": entry_id,
                    "account": line.account,
                    "currency": line.currency,
                    "amount_minor": line.amount_minor,
                    "donor_id": values["donor_id"],
                }
                for line in kept
            ],
        )
    return entry_id


_ENTRY_COLUMNS = (
    "key",
    "kind",
    "occurred_at",
    "created_at",
    "donor_id",
    "stripe_object_id",
    "stripe_charge_id",
    "stripe_balance_transaction_id",
    "currency",
    "amount_minor",
    "fee_minor",
    "net_minor",
)


def postings_cte(new_entry: Any, lines: Any, donor_id: Any, on: Any) -> Any:
    """PostgreSQL: the CTE inserting the postings of the entries `new_entry`
    (a CTE returning their id) inserted: `lines` (account, currency,
    amount_minor) joined to them `on`, each with `donor_id`. For `post`'s one
    statement and `app.ledger.batch`'s page."""
    postings: Table = JournalPosting.__table__  # type: ignore[assignment]
    return (
        pg_insert(postings)
        .from_select(
            ["entry_id", "account", "currency", "amount_minor", "donor_id"],
            select(
                new_entry.c.id, lines.c.account, lines.c.currency, lines.c.amount_minor, donor_id
            ).select_from(new_entry.join(lines, on)),
        )
        .cte("np")
    )


@cache
def _one_statement(with_lines: bool) -> Any:
    """PostgreSQL: INSERT the entry (ON CONFLICT DO NOTHING), its lines (from
    three arrays: one shape for any number of lines) and its changes to the
    daily totals (`daily_totals.posting_changes`) as CTEs of one statement,
    returning the new id (no row for a duplicate). Built once and sent as
    the driver's SQL (`execute_prepared`): compiling it per posting would
    cost more than running it. Short names and no bound constants keep the
    SQL under psycopg's 4 KB limit for caching its conversion."""
    journal: Table = JournalEntry.__table__  # type: ignore[assignment]
    types = {c: journal.c[c].type for c in _ENTRY_COLUMNS}
    types["occurred_at"] = types["created_at"] = DateTime(timezone=True)
    values = select(*[bindparam(c, type_=types[c]).label(c) for c in _ENTRY_COLUMNS])
    new_entry = (
        pg_insert(journal)
        .from_select(list(_ENTRY_COLUMNS), values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(*[journal.c[c] for c in daily_totals.ROW_COLUMNS])
        .cte("ne")
    )
    final = select(new_entry.c.id)
    if with_lines:
        rows = (
            func.unnest(
                bindparam("accounts", type_=ARRAY(String)),
                bindparam("currencies", type_=ARRAY(String)),
                bindparam("amounts", type_=ARRAY(BigInteger)),
            )
            .table_valued("account", "currency", "amount_minor")
            .render_derived(name="l")
        )
        new_postings = postings_cte(new_entry, rows, bindparam("donor_id", type_=Integer), true())
        final = final.add_cte(new_postings)
    object_id = bindparam("stripe_object_id", type_=String)
    return final.add_cte(daily_totals.posting_changes(new_entry, object_id))


def _insert_in_one_statement(
    session: Session, values: dict[str, Any], kept: Sequence[Line], *, lock: bool
) -> int | None:
    params = dict(values)
    if kept:
        params["accounts"] = [line.account for line in kept]
        params["currencies"] = [line.currency for line in kept]
        params["amounts"] = [line.amount_minor for line in kept]
    session.flush()  # what the caller added (the donor the entry points at) goes first
    if lock:  # unless the caller took it already (a statement of its own)
        daily_totals.lock_object(session, values["stripe_object_id"])
    entry_id: int | None = execute_prepared(session, _one_statement(bool(kept)), params).scalar()
    return entry_id


def post_entry(
    session: Session,
    key: str,
    kind: str,
    *,
    occurred_at: datetime,
    stripe_object_id: str,
    movement: Movement,
    lines: Sequence[Line],
    donor_id: int | None = None,
    stripe_charge_id: str | None = None,
    stripe_balance_transaction_id: str | None = None,
) -> bool:
    """`post` with the entry's fields as arguments."""
    return post(
        session,
        Entry(
            key,
            kind,
            occurred_at,
            stripe_object_id,
            movement,
            tuple(lines),
            donor_id,
            stripe_charge_id,
            stripe_balance_transaction_id,
        ),
    )


@cache
def _entry_by_key() -> Any:
    return select(JournalEntry.id).where(JournalEntry.key == bindparam("key"))


def entry_exists(session: Session, key: str) -> bool:
    return session.scalar(_entry_by_key(), {"key": key}) is not None
