"""The ledger CSV (CONTRACT.md, "Ledger CSV") as a stream of byte chunks, for
the CLI (`donations ledger export`) and the finance routes
(`/ledger/export.csv`, `/ledger/journal.csv`).

Two ways to the same bytes:

- on PostgreSQL, `COPY (SELECT ...) TO STDOUT WITH (FORMAT csv)`: the rows of
  `app.ledger.rows_query` (the one source of truth for which rows there are)
  formatted as text by the database itself, streamed through psycopg's
  `cursor.copy()` row by row, so the Python side only forwards bytes;
- anywhere else (SQLite), the Python path: `app.ledger.export_rows` through
  `csv.writer`.

Both write UTF-8, a header row, "\\r\\n" after every row (RFC 4180; embedded
line breaks in a quoted field are kept as they are), quote like `csv`'s
QUOTE_MINIMAL (a field with a comma, a double quote, CR or LF), and leave
empty fields unquoted. The SQL formatting mirrors `app.money.format_plain`
(Stripe's decimal places), `app.ledger.format_timestamp`,
`app.ledger.guard_formula` and `app.ledger.row_from`'s frequency; the tests
compare both paths byte for byte on PostgreSQL.

No Flask, no `stripe`, no commits: reads only, through the caller's session.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import (
    Numeric,
    Select,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app.ledger.rows import CSV_COLUMNS, export_rows, rows_query
from app.money import THREE_DECIMAL, ZERO_DECIMAL, is_currency_code

CSV_BOM = "\ufeff"
LINE_END = "\r\n"
# Rows per chunk handed to the caller (one write, or one piece of an HTTP
# response): big enough to be cheap, small enough for constant memory.
CHUNK_ROWS = 1000

# A query on the rows of `rows_query` (a subquery `r`) -> the same query with
# the caller's filters (app.finance.reports.JournalFilter.apply has this shape).
Filter = Callable[[Select[Any], Any], Select[Any]]

_NOT_FROM_A_PAYMENT = ("payout", "payout_failure", "stripe_fee", "adjustment")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# For the export's transaction only (SET LOCAL): ISO timestamps as text; no
# JIT (compiling the formatting expressions costs seconds, more than it
# saves); room to hash the joined tables and sort in memory.
_COPY_SETTINGS = {"DateStyle": "ISO, MDY", "jit": "off", "work_mem": "64MB"}


# -- the header and the Python path ----------------------------------------------------


def _writer(buffer: io.StringIO) -> Any:
    return csv.writer(buffer, lineterminator=LINE_END)


def header(*, bom: bool = False) -> bytes:
    """The header row (CONTRACT.md's columns), with the byte-order mark if asked."""
    buffer = io.StringIO()
    if bom:
        buffer.write(CSV_BOM)
    _writer(buffer).writerow(CSV_COLUMNS)
    return buffer.getvalue().encode("utf-8")


def python_chunks(rows: Iterable[list[str]], *, bom: bool = False) -> Iterator[bytes]:
    """The CSV of already formatted rows (app.ledger.format_row): the header,
    then CHUNK_ROWS rows per chunk."""
    yield header(bom=bom)
    buffer = io.StringIO()
    writer = _writer(buffer)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


# -- the PostgreSQL path ---------------------------------------------------------------


def _text(value: Any) -> Any:
    """Plain text; an empty string as NULL (COPY writes NULL as an empty
    field and '' as "", csv writes '' as an empty field)."""
    return func.nullif(cast(value, Text), "")


def _guarded(value: Any) -> Any:
    """app.ledger.guard_formula in SQL."""
    return case(
        (func.left(value, 1).in_(_FORMULA_STARTS), literal("'", Text) + value),
        else_=func.nullif(value, ""),
    )


def _codes(codes: frozenset[str]) -> Any:
    """A constant text[] of currency codes (from app.money's lists: [a-z]{3}),
    which PostgreSQL matches with `= ANY` faster than an IN list."""
    if not all(is_currency_code(code) for code in codes):  # pragma: no cover - a typo in money
        raise ValueError("not a currency code")
    return literal_column("'{" + ",".join(sorted(codes)) + "}'::text[]")


def _money(minor: Any, currency: Any) -> Any:
    """app.money.format_plain in SQL: bigint times 0.01 (or 0.001) is a
    numeric with exactly 2 (3) places, like the Decimal; NULL stays NULL."""
    code = cast(currency, Text)
    return case(
        (code == func.any(_codes(ZERO_DECIMAL)), cast(minor, Text)),
        (
            code == func.any(_codes(THREE_DECIMAL)),
            cast(cast(minor, Numeric) * literal_column("0.001"), Text),
        ),
        else_=cast(cast(minor, Numeric) * literal_column("0.01"), Text),
    )


def _frequency(r: Any) -> Any:
    """app.ledger.row_from's frequency in SQL."""
    return case(
        (r.kind.in_(_NOT_FROM_A_PAYMENT), literal(None, Text)),
        (
            or_(r.payment_kind == "once", and_(r.payment_kind.is_(None), r.kind == "donation")),
            literal("once", Text),
        ),
        else_=_text(r.payment_frequency),
    )


def formatted_query(rows: Any, where: Filter | None = None) -> Select[Any]:
    """The CSV's columns, in order, formatted as text, from `rows` (a subquery
    of app.ledger.rows_query), oldest first as app.ledger.iter_rows orders."""
    r = rows.c
    # timestamp::text in DateStyle ISO ("2026-11-24 09:15:00[.123456]", set
    # by copy_chunks) cut to the second: cheaper than to_char.
    utc = cast(func.timezone("UTC", r.occurred_at), Text)
    occurred = func.replace(func.left(utc, 19), " ", "T") + literal("Z", Text)
    query = select(
        occurred.label("occurred_at"),
        _text(r.kind).label("kind"),
        _guarded(r.donor_email).label("donor_email"),
        _guarded(r.donor_name).label("donor_name"),
        _text(r.currency).label("currency"),
        _money(r.amount_minor, r.currency).label("amount"),
        _money(r.fee_minor, r.currency).label("fee"),
        _money(r.net_minor, r.currency).label("net"),
        _text(r.donor_currency).label("donor_currency"),
        _money(r.donor_amount_minor, r.donor_currency).label("donor_amount"),
        _frequency(r).label("frequency"),
        _guarded(r.campaign).label("campaign"),
        _guarded(r.utm_source).label("utm_source"),
        _guarded(r.utm_medium).label("utm_medium"),
        _guarded(r.utm_content).label("utm_content"),
        _guarded(r.utm_term).label("utm_term"),
        _text(r.stripe_id).label("stripe_id"),
    ).select_from(rows)
    if where is not None:
        query = where(query, rows)
    return query.order_by(r.occurred_at, r.key)


def copy_statement(session: Session, query: Select[Any]) -> tuple[str, dict[str, Any]]:
    """`COPY (query) TO STDOUT` with psycopg's placeholders and their values
    (merged client-side by psycopg: COPY takes no server-side parameters)."""
    connection = session.connection()
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)"
    return sql, dict(compiled.params)


def copy_chunks(
    session: Session, rows: Any, where: Filter | None = None, *, bom: bool = False
) -> Iterator[bytes]:
    """The CSV through PostgreSQL's COPY: the header, then CHUNK_ROWS rows
    per chunk. PostgreSQL sends one row per CopyData message and ends it with
    "\\n"; that last byte becomes "\\r\\n" (line breaks inside a quoted field
    are left alone, as csv leaves them). Closing the generator early cancels
    the COPY (psycopg), and the caller's session rolls back."""
    sql, params = copy_statement(session, formatted_query(rows, where))
    driver = session.connection().connection.driver_connection
    assert driver is not None
    yield header(bom=bom)
    with driver.cursor() as cursor:
        for name, value in _COPY_SETTINGS.items():
            cursor.execute("SELECT set_config(%s, %s, true)", (name, value))
        with cursor.copy(sql, params) as copy:
            read = copy.read
            pending: list[Any] = []
            append = pending.append
            while data := read():
                append(data)
                if len(pending) == CHUNK_ROWS:
                    yield _crlf(pending)
                    pending.clear()
            if pending:
                yield _crlf(pending)


def _crlf(rows: list[Any]) -> bytes:
    """Rows as COPY sent them (each ending in "\n") ending in "\r\n". Without
    a quoted field in the chunk no "\n" can be inside a field, so all of them
    end rows; otherwise row by row, only the last byte."""
    chunk = b"".join(rows)
    if b'"' not in chunk:
        return chunk.replace(b"\n", b"\r\n")
    return b"".join(bytes(row)[:-1] + b"\r\n" for row in rows)


def uses_copy(session: Session) -> bool:
    """Whether this session's database takes the COPY path (PostgreSQL
    through psycopg 3, talking UTF-8)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    driver = connection.connection.driver_connection
    info = getattr(driver, "info", None)
    return getattr(info, "encoding", None) == "utf-8"


# -- what the CLI and the routes call ---------------------------------------------------


def iter_csv_chunks(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    bom: bool = False,
) -> Iterator[bytes]:
    """The whole ledger CSV (movements from `since`, inclusive, to `until`,
    exclusive, UTC instants), in byte chunks: COPY on PostgreSQL, the Python
    path elsewhere. Same bytes either way."""
    if uses_copy(session):
        return copy_chunks(session, rows_query(since, until).subquery("r"), bom=bom)
    return python_chunks(export_rows(session, since, until), bom=bom)


def iter_filtered_csv_chunks(
    session: Session,
    rows: Any,
    where: Filter | None,
    python_rows: Iterable[list[str]],
    *,
    bom: bool = False,
) -> Iterator[bytes]:
    """A filtered part of the ledger CSV: `rows` (a subquery of
    app.ledger.rows_query) narrowed by `where` through COPY on PostgreSQL;
    elsewhere `python_rows`, the same set formatted by app.ledger.format_row
    (a lazy iterator: it is not read on PostgreSQL)."""
    if uses_copy(session):
        return copy_chunks(session, rows, where, bom=bom)
    return python_chunks(python_rows, bom=bom)


def write_csv(
    session: Session,
    out: IO[bytes],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    bom: bool = False,
) -> None:
    """Write the whole ledger CSV to a binary file."""
    for chunk in iter_csv_chunks(session, since=since, until=until, bom=bom):
        out.write(chunk)
