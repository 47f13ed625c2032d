"""The roll-up of the daily totals: folds the committed changes postings
appended (`ledger_daily_changes`) into the per-day sums (`ledger_daily_totals`)
and deletes them, in one transaction, so readers stay exact throughout
(app.ledger.totals.daily_sums adds both). Never touches the journal; no
Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import TextClause, func, select, text
from sqlalchemy.orm import Session

from app.ledger.totals import SUMS, LedgerDailyChange

# One roll-up at a time on PostgreSQL (a transaction-level advisory lock):
# another worker finding it held skips its turn instead of waiting.
ROLLUP_LOCK = 0x1ED6E7
_COLUMNS = ("day_utc", "currency", "kind", *SUMS)
_ADDED = ", ".join(f"{name} = ledger_daily_totals.{name} + excluded.{name}" for name in SUMS)
_SUMMED = ", ".join(f"SUM({name})" for name in SUMS)


@cache
def _postgresql_statement() -> TextClause:
    """Delete up to :limit of the oldest changes visible to this statement and
    add them, summed per group in key order, to the totals: one statement,
    so a change is either still in ledger_daily_changes or in the totals.
    A change committed after the statement began is not visible to it and
    stays for the next roll-up; a concurrent roll-up's DELETE skips rows
    already deleted, so no change is counted twice."""
    return text(
        "WITH moved AS (DELETE FROM ledger_daily_changes WHERE id IN "  # noqa: S608 (constants)
        "(SELECT id FROM ledger_daily_changes ORDER BY id LIMIT :limit) "
        f"RETURNING {', '.join(_COLUMNS)}), "
        f"added AS (INSERT INTO ledger_daily_totals ({', '.join(_COLUMNS)}) "
        f"SELECT day_utc, currency, kind, {_SUMMED} FROM moved "
        "GROUP BY day_utc, currency, kind ORDER BY day_utc, currency, kind "
        f"ON CONFLICT (day_utc, currency, kind) DO UPDATE SET {_ADDED}) "
        "SELECT count(*) FROM moved"
    )


def _roll_up_sqlite(session: Session, limit: int) -> int:
    """SQLite has one writer at a time (this transaction holds the write lock
    from its first write), so a high-water id is safe: ids are handed out
    in commit order."""
    change = LedgerDailyChange
    last = session.scalar(
        select(func.max(change.id)).where(
            change.id.in_(select(change.id).order_by(change.id).limit(limit))
        )
    )
    if last is None:
        return 0
    moved = int(
        session.scalar(select(func.count()).select_from(change).where(change.id <= last)) or 0
    )
    session.execute(
        text(
            f"INSERT INTO ledger_daily_totals ({', '.join(_COLUMNS)}) "  # noqa: S608 (constants)
            f"SELECT day_utc, currency, kind, {_SUMMED} FROM ledger_daily_changes "
            "WHERE id <= :last GROUP BY day_utc, currency, kind "
            "ORDER BY day_utc, currency, kind "
            f"ON CONFLICT (day_utc, currency, kind) DO UPDATE SET {_ADDED}"
        ),
        {"last": last},
    )
    session.execute(text("DELETE FROM ledger_daily_changes WHERE id <= :last"), {"last": last})
    return moved


def roll_up(session: Session, *, limit: int = 50_000) -> int:
    """Fold up to `limit` of the oldest committed changes into the daily
    totals (the caller commits; call again while it returns `limit`).
    Returns how many changes were folded; 0 on PostgreSQL when another
    roll-up holds the lock."""
    if session.get_bind().dialect.name != "postgresql":
        return _roll_up_sqlite(session, limit)
    if not session.scalar(select(func.pg_try_advisory_xact_lock(ROLLUP_LOCK))):
        return 0
    return int(session.scalar(_postgresql_statement(), {"limit": limit}) or 0)


def open_changes(session: Session) -> int:
    """How many changes wait for a roll-up."""
    return int(session.scalar(select(func.count()).select_from(LedgerDailyChange)) or 0)


__all__ = ["ROLLUP_LOCK", "open_changes", "roll_up"]
