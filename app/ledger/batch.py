"""Set-based posting on PostgreSQL: many charges' records and journal entries
in a few statements instead of a few per charge, for `stripe sync`'s pages of
history (`app.reconcile.charges` decides which charges may take this path and
what each must write, by the webhook handlers' rules).

The pieces, each one statement for any number of rows:

- `lock_charges`: the ledger's lock on each charge (`totals.object_lock`'s,
  in sorted order);
- `read_state`: after the locks, which charges have a payment record, which
  journal keys are posted, the donors of some Stripe customers and of some
  emails (with their names);
- `insert_donors`, `name_donors`, `attach_customers`, `insert_payments`: the
  records, as `find_or_create_donor`, `attach_customer` and `get_or_insert`
  write them one at a time;
- `post_entries`: entries built by `app.ledger.movements`' builders, each
  checked as `post` checks it (`checked_lines`) and posted once per key (ON
  CONFLICT DO NOTHING), with its lines and its change to the daily totals in
  the same statement: `totals.page_changes` over the page's Stripe objects
  (their rows with the new entries minus their rows without: rows_query's own
  join, as each posting computes it alone, so the totals cannot differ).

A row that another transaction wrote since `read_state` (a donor or payment
inserted, a key posted) raises `BatchConflict`, so the caller can apply its
charges one at a time instead. No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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
    cast,
    column,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import execute_prepared
from app.ledger import totals
from app.ledger.journal import Entry, checked_lines, entry_row, postings_cte
from app.ledger.models import JournalEntry


class BatchConflict(RuntimeError):
    """Another transaction wrote a row this batch meant to write, after the
    batch read that it was missing: apply its items one at a time instead."""


@dataclass(frozen=True)
class KnownDonor:
    id: int
    name: str | None


@dataclass(frozen=True)
class PageState:
    """What the ledger holds of a page's charges, read after their locks."""

    payments: frozenset[str]  # charge ids with a payment record
    posted: frozenset[str]  # journal keys posted
    by_customer: Mapping[str, KnownDonor]  # Stripe customer id -> its donor
    by_email: Mapping[str, KnownDonor]  # normalised email -> its donor


def lock_charges(session: Session, charge_ids: Iterable[str]) -> None:
    """The ledger's lock on each charge (`totals.object_lock`'s), in one
    statement, sorted (two batches wait rather than deadlock). Not noted as
    held (`totals.note_locked` costs a look-up per charge): a charge the
    handler then applies takes it again, as always (it is re-entrant)."""
    session.connection().exec_driver_sql(
        "SELECT count(pg_advisory_xact_lock(hashtext(c))) FROM unnest(%(ids)s::text[]) AS c",
        {"ids": sorted(set(charge_ids))},
    )


# Each value looked up alone (LATERAL ... LIMIT 1: the unique index, as the
# handlers' one-value look-ups use it), not `= ANY(array)`: without statistics
# (a new ledger, autovacuum not there yet) PostgreSQL planned that as scans
# of the whole table, and the donors' email as the trigram index's (2.4 s a
# page at 5,000 donors, measured).
_READ = """
SELECT 'payment', v.c, NULL::integer, NULL::text
FROM unnest(%(charges)s::text[]) AS v(c)
CROSS JOIN LATERAL (SELECT 1 FROM payments p WHERE p.stripe_charge_id = v.c LIMIT 1) AS p
UNION ALL
SELECT 'posted', v.k, NULL, NULL
FROM unnest(%(keys)s::text[]) AS v(k)
CROSS JOIN LATERAL (SELECT 1 FROM journal_entries e WHERE e.key = v.k LIMIT 1) AS e
UNION ALL
SELECT 'customer', v.c, d.id, d.name
FROM unnest(%(customers)s::text[]) AS v(c)
CROSS JOIN LATERAL (
    SELECT d.id, d.name FROM stripe_customers s JOIN donors d ON d.id = s.donor_id
    WHERE s.stripe_customer_id = v.c LIMIT 1
) AS d
UNION ALL
SELECT 'email', v.e, d.id, d.name
FROM unnest(%(emails)s::text[]) AS v(e)
CROSS JOIN LATERAL (SELECT d.id, d.name FROM donors d WHERE d.email = v.e LIMIT 1) AS d
"""


def read_state(
    session: Session,
    *,
    charge_ids: Sequence[str],
    keys: Sequence[str],
    customers: Sequence[str],
    emails: Sequence[str],
) -> PageState:
    """One statement (after `lock_charges`): see PageState."""
    session.flush()  # as autoflush would before a query
    rows = session.connection().exec_driver_sql(
        _READ,
        {
            "charges": list(charge_ids),
            "keys": list(keys),
            "customers": list(customers),
            "emails": list(emails),
        },
    )
    payments: set[str] = set()
    posted: set[str] = set()
    by_customer: dict[str, KnownDonor] = {}
    by_email: dict[str, KnownDonor] = {}
    for what, key, donor_id, name in rows:
        if what == "payment":
            payments.add(key)
        elif what == "posted":
            posted.add(key)
        elif what == "customer":
            by_customer[key] = KnownDonor(donor_id, name)
        else:
            by_email[key] = KnownDonor(donor_id, name)
    return PageState(frozenset(payments), frozenset(posted), by_customer, by_email)


def insert_donors(session: Session, donors: Sequence[tuple[str, str | None]]) -> dict[str, int]:
    """New donors (normalised email, name), in this order; their ids by email.
    Raises BatchConflict if one exists (inserted since `read_state`)."""
    if not donors:
        return {}
    now = utcnow()
    rows = session.connection().exec_driver_sql(
        """
        INSERT INTO donors (email, name, created_at, updated_at)
        SELECT v.email, v.name, %(now)s, %(now)s
        FROM unnest(%(emails)s::text[], %(names)s::text[]) WITH ORDINALITY AS v(email, name, n)
        ORDER BY v.n
        ON CONFLICT (email) DO NOTHING
        RETURNING id, email
        """,
        {"emails": [e for e, _ in donors], "names": [n for _, n in donors], "now": now},
    )
    ids = {email: donor_id for donor_id, email in rows}
    if len(ids) != len(donors):
        raise BatchConflict("a donor was created meanwhile")
    return ids


def name_donors(session: Session, names: Sequence[tuple[int, str]]) -> None:
    """Give known donors the name they lacked (donor id, name)."""
    if not names:
        return
    session.connection().exec_driver_sql(
        """
        UPDATE donors SET name = v.name, updated_at = %(now)s
        FROM unnest(%(ids)s::integer[], %(names)s::text[]) AS v(id, name)
        WHERE donors.id = v.id
        """,
        {"ids": [i for i, _ in names], "names": [n for _, n in names], "now": utcnow()},
    )


def attach_customers(session: Session, links: Sequence[tuple[str, int, bool]]) -> None:
    """Stripe customers to their donors (customer id, donor id, livemode):
    first writer wins, as `attach_customer`."""
    if not links:
        return
    session.connection().exec_driver_sql(
        """
        INSERT INTO stripe_customers (stripe_customer_id, donor_id, livemode, created_at)
        SELECT v.c, v.d, v.l, %(now)s
        FROM unnest(%(customers)s::text[], %(donors)s::integer[], %(live)s::boolean[])
             WITH ORDINALITY AS v(c, d, l, n)
        ORDER BY v.n
        ON CONFLICT (stripe_customer_id) DO NOTHING
        """,
        {
            "customers": [c for c, _, _ in links],
            "donors": [d for _, d, _ in links],
            "live": [live for _, _, live in links],
            "now": utcnow(),
        },
    )


# The payments' columns `insert_payments` writes (every one but the id), with
# the SQL type each is read as from the JSON.
PAYMENT_COLUMNS = {
    "stripe_charge_id": "text",
    "stripe_payment_intent_id": "text",
    "stripe_invoice_id": "text",
    "stripe_subscription_id": "text",
    "stripe_customer_id": "text",
    "donor_id": "integer",
    "checkout_id": "text",
    "kind": "text",
    "amount_minor": "bigint",
    "currency": "text",
    "status": "text",
    "livemode": "boolean",
    "amount_refunded_minor": "bigint",
    "amount_refunded_at": "timestamptz",
    "stripe_created_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}


def _json(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as one JSON array of objects (datetimes in ISO 8601, with their
    offset), for `json_to_recordset`: one parameter instead of an array per
    column, whose element-by-element conversion in psycopg was a sixth of the
    syncing process's CPU (profiled)."""
    return json.dumps(
        [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows
        ],
        separators=(",", ":"),
    )


@cache
def _insert_payments_sql() -> str:
    names = ", ".join(PAYMENT_COLUMNS)
    typed = ", ".join(f"{name} {kind}" for name, kind in PAYMENT_COLUMNS.items())
    # The column names and types are the constants above.
    return (
        f"INSERT INTO payments ({names}) SELECT {names} "  # noqa: S608
        f"FROM json_to_recordset(%(rows)s::json) AS v({typed}) "
        "ON CONFLICT (stripe_charge_id) DO NOTHING RETURNING id"
    )


def insert_payments(session: Session, payments: Sequence[Mapping[str, Any]]) -> None:
    """New payment records (each a mapping of PAYMENT_COLUMNS).
    Raises BatchConflict if one exists (inserted since `read_state`)."""
    if not payments:
        return
    rows = [{name: p[name] for name in PAYMENT_COLUMNS} for p in payments]
    inserted = (
        session.connection()
        .exec_driver_sql(_insert_payments_sql(), {"rows": _json(rows)})
        .fetchall()
    )
    if len(inserted) != len(payments):
        raise BatchConflict("a payment was recorded meanwhile")


_ENTRY_COLUMNS = (
    ("key", String),
    ("kind", String),
    ("occurred_at", DateTime(timezone=True)),
    ("created_at", DateTime(timezone=True)),
    ("donor_id", Integer),
    ("stripe_object_id", String),
    ("stripe_charge_id", String),
    ("stripe_balance_transaction_id", String),
    ("currency", String),
    ("amount_minor", BigInteger),
    ("fee_minor", BigInteger),
    ("net_minor", BigInteger),
)
_LINE_COLUMNS = (
    ("key", String),
    ("account", String),
    ("currency", String),
    ("amount_minor", BigInteger),
    ("donor_id", Integer),
)


def _recordset(parameter: str, columns: Sequence[tuple[str, Any]], name: str) -> Any:
    """`json_to_recordset(:parameter)` as a table of `columns`."""
    return (
        func.json_to_recordset(cast(bindparam(parameter, type_=String), JSON))
        .table_valued(*[column(c, kind) for c, kind in columns])
        .render_derived(name=name, with_types=True)
    )


@cache
def _post_entries_statement() -> Any:
    """INSERT the entries (from one JSON document; ON CONFLICT DO NOTHING),
    their lines (another, joined by key) and the daily totals' change
    (`totals.page_changes` over the objects in :object_ids) as CTEs of one
    statement returning how many entries were new."""
    journal: Table = JournalEntry.__table__  # type: ignore[assignment]
    names = [name for name, _ in _ENTRY_COLUMNS]
    source = _recordset("entries", _ENTRY_COLUMNS, "v")
    new_entry = (
        pg_insert(journal)
        .from_select(names, select(*[source.c[name] for name in names]))
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(*[journal.c[c] for c in totals.ROW_COLUMNS], journal.c.key)
        .cte("ne")
    )
    lines = _recordset("lines", _LINE_COLUMNS, "l")
    new_postings = postings_cte(new_entry, lines, lines.c.donor_id, lines.c.key == new_entry.c.key)
    objects = bindparam("object_ids", type_=ARRAY(String))
    return (
        select(func.count())
        .select_from(new_entry)
        .add_cte(new_postings)
        .add_cte(totals.page_changes(new_entry, objects))
    )


def post_entries(session: Session, entries: Sequence[Entry]) -> None:
    """Post entries once per key, with their lines and their change to the
    daily totals, in one statement (the entries checked as `post` checks
    them). Their objects' locks must be held (`lock_charges`) and every key
    must be unposted (`read_state`): raises BatchConflict if one was posted
    meanwhile."""
    if not entries:
        return
    now = utcnow()
    rows: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for entry in entries:
        kept = checked_lines(entry)
        rows.append(entry_row(entry, now))
        lines.extend(
            {
                "key": entry.key,
                "account": line.account,
                "currency": line.currency,
                "amount_minor": line.amount_minor,
                "donor_id": entry.donor_id,
            }
            for line in kept
        )
    objects = sorted({entry.stripe_object_id for entry in entries})
    session.flush()
    params = {"entries": _json(rows), "lines": _json(lines), "object_ids": objects}
    new = execute_prepared(session, _post_entries_statement(), params).scalar()
    if new != len(entries):
        raise BatchConflict("a journal key was posted meanwhile")
