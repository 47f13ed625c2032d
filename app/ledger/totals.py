"""The journal's daily totals: a rollup of the ledger CSV's money per UTC day
of the movement, currency and kind, so the dashboard and the journal's totals
read a few hundred sums instead of every row of a month.

Derived data, never the truth: the journal (`journal_entries` and
`journal_postings`, append-only) is. Every figure here equals what
`app.ledger.rows_query` gives for the same rows, and can be recomputed from
the journal at any time (`donations ledger rebuild-totals`); `donations
ledger verify` reports any difference.

How it is kept: in the transaction that posts an entry, `add_posting` (from
`app.ledger.post`, once per entry) appends the entry's effect on the CSV's
rows to `ledger_daily_changes`, a row per (day, currency, kind) it changes,
never updating one: concurrent postings contend on no row. A row's figures
are its settlement's once the movement is settled (possibly in another
currency), so posting a settlement moves the row from the recognised amount
to the balance transaction's figures: -recognised (its currency), +settled
(its currency), both on the movement's UTC day and kind. The effect is
computed by the same join as `rows_query` (the affected rows after the
posting minus the same rows without it), so the two cannot drift apart; only
the posting's Stripe object's few entries take part (an indexed lookup, in
the same statement as the insert), so posting costs the same at any size of
journal. On PostgreSQL the change is part of the posting's own statement
(`posting_changes`: the object's entries in its snapshot plus the one being
inserted, against the snapshot alone), after the object's lock taken by an
earlier statement of the transaction. `app.ledger.rollup.roll_up` (the
worker, every few seconds) folds the committed changes into
`ledger_daily_totals` and deletes them, in one
transaction; readers add the two tables (`daily_sums`), so they are exact
before, during and after a roll-up. The seed rebuilds the totals once
from the journal after its bulk load (`rebuild`). No Flask, no `stripe`,
no commits.

Why one module: the posting side (`add_posting`) and the
checking side (`from_journal`, `differences`) share one definition of a
row's figures (`_rows`, rows_query's join), so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from app.db import Base, execute_prepared, insert_for
from app.ledger.models import JournalEntry

# Movements whose row takes its figures from a settlement (rows_query's join).
SETTLED_KINDS = ("donation", "membership_payment", "refund")
# Entries whose postings can change each other's rows: `post` locks their
# Stripe object (`lock_object`).
RELATED_KINDS = (*SETTLED_KINDS, "settlement")
SUMS = ("amount_minor", "fee_minor", "net_minor", "row_count")


class LedgerDailyTotal(Base):
    """Sums of the ledger CSV's rows of one kind and currency whose movement
    happened on one UTC day: amount, fee and net (NULL counted as 0), and the
    number of rows."""

    __tablename__ = "ledger_daily_totals"

    day_utc: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    net_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerDailyChange(Base):
    """One posting's change to one (day, currency, kind) group of the daily
    totals, appended in the posting's transaction and folded into
    ledger_daily_totals (then deleted) by the roll-up."""

    __tablename__ = "ledger_daily_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    day_utc: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(24))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, order=True)
class DayTotal:
    """One (day, currency, kind) group of sums, or a change to one."""

    day_utc: date
    currency: str
    kind: str
    amount_minor: int
    fee_minor: int
    net_minor: int
    row_count: int

    @property
    def is_zero(self) -> bool:
        return not (self.amount_minor or self.fee_minor or self.net_minor or self.row_count)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def utc_day(column: Any, dialect: str) -> Any:
    """The UTC calendar day of a UTC timestamp column, as SQL."""
    if dialect == "postgresql":
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    return func.date(column)


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _rows(
    dialect: str, sign: int, where: Any, join_extra: Any = None, source: Any = None
) -> Select[Any]:
    """rows_query's money columns (movement day, currency, kind) for the
    movements matching `where`, each joined to its settlements (those also
    matching `join_extra`), with a sign. `source` (a CTE with the journal's
    columns) stands for journal_entries when given."""
    if source is None:
        m = aliased(JournalEntry, name="m")
        s = aliased(JournalEntry, name="s")
    else:
        m = aliased(JournalEntry, source.alias(f"{source.name}_m"))
        s = aliased(JournalEntry, source.alias(f"{source.name}_s"))
    settled = s.id.is_not(None)
    # Constants are written into the SQL, not bound: an IN of bound values is
    # expanded anew at every execution, and on the posting path (a statement
    # per entry) each bound constant is one more parameter to send.
    settlement: Any = literal_column("'settlement'")
    zero: Any = literal_column("0")
    on = and_(
        s.kind == settlement,
        s.stripe_object_id == m.stripe_object_id,
        m.kind.in_([literal_column(f"'{kind}'") for kind in SETTLED_KINDS]),
    )
    if join_extra is not None:
        on = and_(on, join_extra(s))

    def signed(value: Any) -> Any:
        return value if sign == 1 else -value

    return (
        select(
            utc_day(m.occurred_at, dialect).label("day_utc"),
            func.coalesce(s.currency, m.currency).label("currency"),
            m.kind.label("kind"),
            signed(case((settled, s.amount_minor), else_=m.amount_minor)).label("amount"),
            signed(func.coalesce(case((settled, s.fee_minor), else_=m.fee_minor), zero)).label(
                "fee"
            ),
            signed(func.coalesce(case((settled, s.net_minor), else_=m.net_minor), zero)).label(
                "net"
            ),
            literal_column(str(sign), Integer).label("n"),
        )
        .select_from(m)
        .outerjoin(s, on)
        .where(m.kind != settlement, where(m))
    )


def _grouped(rows: Any) -> Select[Any]:
    return select(
        rows.c.day_utc,
        rows.c.currency,
        rows.c.kind,
        func.sum(rows.c.amount),
        func.sum(rows.c.fee),
        func.sum(rows.c.net),
        func.sum(rows.c.n),
    ).group_by(rows.c.day_utc, rows.c.currency, rows.c.kind)


def _totals(result: Any) -> list[DayTotal]:
    found = [
        DayTotal(
            as_date(day),
            currency,
            kind,
            int(amount or 0),
            int(fee or 0),
            int(net or 0),
            int(n or 0),
        )
        for day, currency, kind, amount, fee, net, n in result
    ]
    return sorted(t for t in found if not t.is_zero)


def journal_totals_query(dialect: str) -> Select[Any]:
    """The whole journal's daily totals, computed from the journal."""
    return _grouped(_rows(dialect, 1, lambda m: literal(True)).subquery("r"))


def apply(session: Session, changes: Sequence[DayTotal]) -> None:
    """Add `changes` to the rollup: INSERT ... ON CONFLICT DO UPDATE SET x = x +
    excluded.x, in key order (concurrent postings lock rows in one order)."""
    if not changes:
        return
    table = LedgerDailyTotal.__table__
    statement = insert_for(session)(table).values(
        [
            {
                "day_utc": c.day_utc,
                "currency": c.currency,
                "kind": c.kind,
                "amount_minor": c.amount_minor,
                "fee_minor": c.fee_minor,
                "net_minor": c.net_minor,
                "row_count": c.row_count,
            }
            for c in sorted(changes)
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["day_utc", "currency", "kind"],
        set_={name: table.c[name] + statement.excluded[name] for name in SUMS},
    )
    session.execute(statement)


def _object_changes(dialect: str) -> Select[Any]:
    """What posting the entry :entry_id (just inserted, in this transaction)
    about the Stripe object :object_id changed in the CSV's rows, per day,
    currency and kind: the rows of the object's movements as they are now,
    minus the same rows without that entry (rows_query's own join, so the
    two cannot drift apart). Both sides read a few rows by the indexed
    stripe_object_id, in one snapshot; only the rows whose movement is the
    new entry, or whose settlement is, differ. Zero groups are left out."""
    entry_id = bindparam("entry_id", type_=Integer)
    object_id = bindparam("object_id", type_=String)

    def about(m: Any) -> Any:
        return m.stripe_object_id == object_id

    def before(m: Any) -> Any:
        return and_(about(m), m.id != entry_id)

    now = _rows(dialect, 1, about)
    then = _rows(dialect, -1, before, lambda s: s.id != entry_id)
    c = union_all(now, then).subquery("c")
    sums = [func.sum(c.c.amount), func.sum(c.c.fee), func.sum(c.c.net), func.sum(c.c.n)]
    return (
        select(c.c.day_utc, c.c.currency, c.c.kind, *sums)
        .where(true())  # SQLite: an INSERT ... SELECT followed by ON CONFLICT needs a WHERE
        .group_by(c.c.day_utc, c.c.currency, c.c.kind)
        .having(or_(*[total != 0 for total in sums]))
        .order_by(c.c.day_utc, c.c.currency, c.c.kind)
    )


# The columns of an entry that its rows' figures read (`_rows`).
ROW_COLUMNS = (
    "id",
    "kind",
    "occurred_at",
    "stripe_object_id",
    "currency",
    "amount_minor",
    "fee_minor",
    "net_minor",
)


def posting_changes(new_entry: Any, object_id: Any) -> Any:
    """PostgreSQL, in the statement that inserts an entry: the INSERT of its
    changes INTO ledger_daily_changes, as a CTE. `new_entry` is the entry's
    INSERT ... RETURNING (ROW_COLUMNS) as a CTE, `object_id` its Stripe
    object's bound id. The rows of the object's movements with the new entry
    (the object's entries in the statement's snapshot, plus `new_entry`)
    minus the same rows without it (the snapshot alone): rows_query's own
    join (`_rows`), as `add_posting` computes it after the insert. A
    duplicate (no row returned) changes nothing. For a settlement or a
    movement of a settled kind, the statement must run after
    `lock_object(object_id)`, taken by an earlier statement of the
    transaction: the snapshot then holds whatever a concurrent posting about
    the object committed."""
    journal = JournalEntry.__table__

    def about(m: Any) -> Any:
        return m.stripe_object_id == object_id

    snapshot = _row_columns(journal).where(about(journal.c))
    return _changes_cte(new_entry, snapshot, _rows("postgresql", -1, about))


def page_changes(new_entry: Any, object_ids: Any) -> Any:
    """posting_changes for the entries of a page about many objects (the bound
    array `object_ids`, each object's lock held). The objects' entries in the
    snapshot are read first, each object by the journal's index (LATERAL,
    with OFFSET 0 so that PostgreSQL does not pull it up into a join it
    would plan from estimates), and both sides of the difference are
    computed from them. Planned without statistics (a ledger filling during a backfill before autoanalyze, or a
    server without autovacuum), `stripe_object_id = ANY(:ids)` over the page's
    hundred ids was estimated at half the journal and scanned it whole for
    every page (190 against 857 charges/s at 100,000, measured 2026-12-01;
    tests/integration/test_batch_plans.py)."""
    journal = JournalEntry.__table__
    ids = func.unnest(object_ids).table_valued("id").render_derived(name="o")
    entries = (
        _row_columns(journal)
        .where(journal.c.stripe_object_id == ids.c.id)
        .offset(literal_column("0"))  # kept a subquery: not joined by a plan of its own
        .lateral("j")
    )
    snapshot = _row_columns(entries).select_from(ids).join(entries, true()).cte("oj")
    return _changes_cte(
        new_entry,
        _row_columns(snapshot),
        _rows("postgresql", -1, lambda m: true(), source=snapshot),
    )


def _row_columns(source: Any) -> Select[Any]:
    """SELECT of `source`'s ROW_COLUMNS (the journal, a CTE or a subquery of it)."""
    return select(*[source.c[name] for name in ROW_COLUMNS])


def _changes_cte(new_entry: Any, snapshot: Any, then: Any) -> Any:
    """The INSERT INTO ledger_daily_changes (a CTE) of the rows of `snapshot`
    (the objects' entries, ROW_COLUMNS) with `new_entry`'s added, less `then`
    (the same rows without them), grouped, zero changes left out."""
    with_new = union_all(snapshot, _row_columns(new_entry)).cte("oe")
    now = _rows("postgresql", 1, lambda m: true(), source=with_new)
    c = union_all(now, then).subquery("c")
    sums = [func.sum(c.c.amount), func.sum(c.c.fee), func.sum(c.c.net), func.sum(c.c.n)]
    changes = (
        select(c.c.day_utc, c.c.currency, c.c.kind, *sums)
        .group_by(c.c.day_utc, c.c.currency, c.c.kind)
        .having(or_(*[total != literal_column("0") for total in sums]))
        .order_by(c.c.day_utc, c.c.currency, c.c.kind)
    )
    table = Base.metadata.tables[LedgerDailyChange.__tablename__]
    return pg_insert(table).from_select(["day_utc", "currency", "kind", *SUMS], changes).cte("nc")


@cache
def _add_posting_statement(dialect: str) -> Any:
    """INSERT the changes of one posting (`_object_changes`) INTO
    ledger_daily_changes: plain appends, built once per dialect."""
    table = Base.metadata.tables[LedgerDailyChange.__tablename__]
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).from_select(
        ["day_utc", "currency", "kind", *SUMS], _object_changes(dialect)
    )


def add_posting(session: Session, entry_id: int, stripe_object_id: str) -> None:
    """Keep the totals exact after `post` inserted one entry about
    `stripe_object_id`, in the same transaction: one statement that reads
    the object's few entries and appends the posting's effect to
    ledger_daily_changes (no row is updated, so concurrent postings do not
    wait for each other). For a settlement or a movement of a settled kind,
    call it after `lock_object(stripe_object_id)` (held since before the
    entry was inserted), so a movement and its settlement posted at once
    each see the other."""
    execute_prepared(
        session,
        _add_posting_statement(_dialect(session)),
        {"entry_id": entry_id, "object_id": stripe_object_id},
    )


def lock_object(session: Session, stripe_object_id: str) -> None:
    """On PostgreSQL, serialise postings about one Stripe object until the
    transaction ends, so a movement and its settlement posted at the same time
    each see the other (READ COMMITTED) and the rollup counts the pair once."""
    if _dialect(session) == "postgresql" and not is_locked(session, stripe_object_id):
        execute_prepared(session, _lock_statement(), {"object_id": stripe_object_id})
        note_locked(session, stripe_object_id)


@cache
def _lock_statement() -> Any:
    return select(object_lock(bindparam("object_id", type_=String)))


def object_lock(object_id: Any) -> Any:
    """PostgreSQL: the SQL expression that takes `lock_object`'s lock, for a
    caller that takes it within a statement of its own (then `note_locked`)."""
    return func.pg_advisory_xact_lock(func.hashtext(object_id))


_HELD = "donations_ledger_object_locks"


def _held(session: Session) -> set[str]:
    """The objects whose lock this session's transaction (the innermost: a
    rolled-back savepoint releases its locks) holds, as far as we noted."""
    connection = session.connection()
    transaction = connection.get_nested_transaction() or connection.get_transaction()
    held = connection.info.get(_HELD)
    if held is None or held[0] is not transaction:
        held = (transaction, set())
        connection.info[_HELD] = held
    found: set[str] = held[1]
    return found


def note_locked(session: Session, stripe_object_id: str) -> None:
    """Note that the transaction took `lock_object`'s lock on this object in
    a statement of its own (`object_lock`), so posting skips taking it again."""
    _held(session).add(stripe_object_id)


def is_locked(session: Session, stripe_object_id: str) -> bool:
    return stripe_object_id in _held(session)


def daily_sums() -> Any:
    """The daily totals as readers must see them: the rolled-up sums and the
    changes not yet rolled up, as one subquery of (day_utc, currency, kind,
    amount_minor, fee_minor, net_minor, row_count) rows, several per group
    (sum them). Read in one statement, it is exact whatever a roll-up does
    meanwhile: a roll-up moves sums from one side to the other in one
    transaction."""
    columns = ("day_utc", "currency", "kind", *SUMS)
    rolled = LedgerDailyTotal.__table__
    changes = LedgerDailyChange.__table__
    return union_all(
        select(*[rolled.c[name] for name in columns]),
        select(*[changes.c[name] for name in columns]),
    ).subquery("daily_sums")


def stored(session: Session) -> list[DayTotal]:
    """The stored totals per group (rolled up and open changes added)."""
    sums = daily_sums()
    return _totals(
        session.execute(
            select(
                sums.c.day_utc,
                sums.c.currency,
                sums.c.kind,
                *[func.sum(sums.c[name]) for name in SUMS],
            ).group_by(sums.c.day_utc, sums.c.currency, sums.c.kind)
        )
    )


def from_journal(session: Session) -> list[DayTotal]:
    return _totals(session.execute(journal_totals_query(_dialect(session))))


def rebuild(session: Session) -> int:
    """Recompute the whole rollup from the journal (the caller commits, so it
    is one transaction: readers see the old sums or the new ones); the open
    changes are folded in (deleted). Returns the number of groups written.
    On PostgreSQL both tables are locked against concurrent postings and
    roll-ups meanwhile."""
    if _dialect(session) == "postgresql":
        session.execute(
            text("LOCK TABLE ledger_daily_changes, ledger_daily_totals IN SHARE ROW EXCLUSIVE MODE")
        )
    session.execute(delete(LedgerDailyChange))
    session.execute(delete(LedgerDailyTotal))
    totals = from_journal(session)
    for start in range(0, len(totals), 1000):
        apply(session, totals[start : start + 1000])
    return len(totals)


def differences(session: Session) -> list[str]:
    """How the stored rollup differs from the journal, one line per group."""
    keyed_stored = {(t.day_utc, t.currency, t.kind): t for t in stored(session)}
    keyed_truth = {(t.day_utc, t.currency, t.kind): t for t in from_journal(session)}
    problems: list[str] = []
    for key in sorted(set(keyed_stored) | set(keyed_truth)):
        have, want = keyed_stored.get(key), keyed_truth.get(key)
        got = tuple(getattr(have, f) if have else 0 for f in SUMS)
        expected = tuple(getattr(want, f) if want else 0 for f in SUMS)
        if got != expected:
            day, currency, kind = key
            problems.append(
                f"daily totals for {day.isoformat()} {currency} {kind} are "
                f"(amount, fee, net, rows) {got}, the journal gives {expected}; "
                "run `donations ledger rebuild-totals`"
            )
    return problems


__all__ = [
    "RELATED_KINDS",
    "SUMS",
    "DayTotal",
    "LedgerDailyChange",
    "LedgerDailyTotal",
    "add_posting",
    "apply",
    "as_date",
    "daily_sums",
    "differences",
    "from_journal",
    "is_locked",
    "lock_object",
    "note_locked",
    "object_lock",
    "page_changes",
    "posting_changes",
    "rebuild",
    "stored",
    "utc_day",
]
