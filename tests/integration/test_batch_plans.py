"""The sync's page statements are planned as look-ups by index even where
PostgreSQL has no statistics yet (a new ledger filling during a backfill, on
a server without autovacuum or before its first autoanalyze). Without them
PostgreSQL estimates `stripe_object_id = ANY(:ids)` over a hundred ids at
half the table and scans it whole, for every page: on 2026-12-01 that made a
100,000-charge backfill run at 190 instead of 857 charges/s. The plans are
read with EXPLAIN (nothing runs) on a journal of some thousands of entries
that has never been analysed, in a transaction rolled back after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects import postgresql

from app.ledger import batch

pytestmark = pytest.mark.postgres

ENTRIES = 5_000


@contextmanager
def _unanalysed_journal(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose transaction (rolled back after) sees ENTRIES
    entries in a journal that was never analysed."""
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute(
        "INSERT INTO journal_entries (key, kind, occurred_at, created_at, stripe_object_id,"
        " stripe_charge_id, currency, amount_minor)"
        " SELECT 'k' || i, 'donation', now(), now(), 'ch_' || i, 'ch_' || i, 'usd', 500"
        " FROM generate_series(1, %s) AS i",
        (ENTRIES,),
    )
    reltuples = conn.execute(
        "SELECT reltuples FROM pg_class WHERE relname = 'journal_entries'"
    ).fetchone()
    assert reltuples is not None and reltuples[0] <= 0, "the journal must have no statistics"
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _plan(conn: psycopg.Connection[Any], statement: Any, params: dict[str, Any]) -> str:
    compiled = statement.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    sql = str(compiled)
    values = compiled.construct_params(params)
    rows = conn.execute(f"EXPLAIN {sql}", values).fetchall()
    return "\n".join(row[0] for row in rows)


def test_the_page_posting_statement_reads_its_objects_by_index(postgres_url: str) -> None:
    with _unanalysed_journal(postgres_url) as conn:
        ids = [f"ch_{i}" for i in range(1, 101)]
        plan = _plan(
            conn,
            batch._post_entries_statement(),
            {"entries": "[]", "lines": "[]", "object_ids": ids},
        )
    assert "Seq Scan on journal_entries" not in plan, plan


def test_a_donor_search_by_email_prefix_is_counted_and_read_as_an_index_range(
    postgres_url: str,
) -> None:
    # The finance area's search (app.finance.reports.donors.search_donors):
    # name ILIKE '%x%' OR email LIKE 'x%', by email. With only the trigram
    # indexes the planner guessed the prefix's matches at 1% of the donors and
    # walked them all in email order at 1,000,000 payments (229-287 ms).
    conn = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        conn.execute(
            "INSERT INTO donors (email, name, created_at, updated_at)"
            " SELECT 'reader' || i || '@example.org', 'Reader ' || i, now(), now()"
            " FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE donors")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT id FROM donors WHERE email LIKE 'reader1234%'"
            ).fetchall()
        )
        assert "Index Scan on ix_donors_email_prefix" in plan, plan
        # a range of the index, counted from the histogram, not a guess
        assert "(email)::text ~>=~ 'reader1234'::text" in plan, plan
    finally:
        conn.rollback()
        conn.close()
