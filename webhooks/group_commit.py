"""Group commit for the webhook route on PostgreSQL: the rows of concurrent
deliveries in one process stored by one statement and one commit.

A delivery hands its row to the process's `GroupCommit` and waits. If no batch
is being written, that delivery's thread writes every row waiting (its own and
any that came meanwhile) as one `INSERT ... VALUES (...), (...) ON CONFLICT
(stripe_event_id) DO NOTHING RETURNING stripe_event_id` in autocommit: one
statement, one commit (flushed to disk with synchronous_commit on) for all of
them. Rows that arrive while a batch is being written wait for it to end and
form the next one, so a lone delivery waits for nobody and a busy process
writes fewer, larger statements (profiled: the statement, its commit and
psycopg's call per event were about half a stored webhook's CPU, app and
PostgreSQL together).

Each waiter learns whether its own row was new; a second delivery of the same
event in the same batch is a duplicate (only the first is inserted). Every
waiter returns only after the statement that holds its row has committed, so
an acknowledged event is durable. The statement is atomic: if it fails,
nothing of the batch is stored and every waiter gets the exception (the
receiver answers 503 for a database that is unavailable; Stripe delivers
again and the INSERT is idempotent). A connection the database dropped is
replaced and the batch tried once more. An error that is not the database's
(`psycopg.OperationalError`) is retried row by row, so one row the database
refuses fails its own delivery only.

Imports no Flask.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from webhooks.inbox import STORED_COLUMNS

MAX_ROWS = 64  # per statement (704 parameters); more wait for the next one


@cache
def batch_sql(rows: int) -> str:
    """The INSERT of `rows` rows, positional parameters in STORED_COLUMNS' order."""
    # Our own column names and placeholders only; the values are parameters.
    row = "(" + ", ".join(["%s"] * len(STORED_COLUMNS)) + ")"
    columns = ", ".join(STORED_COLUMNS)
    values = ", ".join([row] * rows)
    return (
        f"INSERT INTO stripe_events ({columns}) VALUES {values}"  # noqa: S608
        " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING stripe_event_id"
    )


class _Waiter:
    __slots__ = ("done", "error", "stored", "values")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.done = False
        self.stored = False
        self.error: BaseException | None = None


class GroupCommit:
    """One per process (and engine): `store` from any number of threads."""

    def __init__(self, engine: Engine, max_rows: int = MAX_ROWS) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Waiter] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """Rows handed in and not yet taken into a statement."""
        with self._cond:
            return len(self._queue)

    def store(self, values: dict[str, Any]) -> bool:
        """Store the row (`event_values`); True when this call stored it, False
        for a duplicate. Returns once the row is committed; raises what the
        statement raised (nothing of its batch is stored then)."""
        waiter = _Waiter(values)
        cond = self._cond
        with cond:
            self._queue.append(waiter)
        while True:
            with cond:
                while self._writing and not waiter.done:
                    cond.wait()
                if waiter.done:
                    break
                # Nobody writes: this thread writes the oldest rows waiting
                # (its own among them unless more than max_rows came first).
                self._writing = True
                batch = self._queue[: self.max_rows]
                del self._queue[: self.max_rows]
            try:
                self._write(batch)
            finally:
                with cond:
                    self._writing = False
                    cond.notify_all()
        if waiter.error is not None:
            raise waiter.error
        return waiter.stored

    def _write(self, batch: list[_Waiter]) -> None:
        """Every waiter of `batch` done: stored or not, or with its error."""
        try:
            new = self._insert([w.values for w in _firsts(batch)])
        except psycopg.OperationalError as exc:
            _finish(batch, error=exc)
            return
        except Exception as exc:  # not the database's: row by row
            if len(batch) == 1:
                _finish(batch, error=exc)
                return
            for waiter in batch:
                self._write([waiter])
            return
        except BaseException as exc:
            _finish(batch, error=exc)
            raise
        seen: set[str] = set()
        for waiter in batch:
            event_id = waiter.values["stripe_event_id"]
            waiter.stored = event_id in new and event_id not in seen
            seen.add(event_id)
            waiter.done = True

    def _insert(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The ids of `rows` this statement inserted. One statement in
        autocommit; a dropped connection is replaced and tried once more."""
        statement = batch_sql(len(rows))
        params = [row[column] for row in rows for column in STORED_COLUMNS]
        for attempt in (1, 2):
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(statement, params)
                    return {found for (found,) in cursor.fetchall()}
                finally:
                    cursor.close()
            except psycopg.OperationalError:
                connection.invalidate()  # never back into the pool
                if attempt == 2:
                    raise
            finally:
                connection.close()
        raise AssertionError("unreachable")


def _firsts(batch: list[_Waiter]) -> list[_Waiter]:
    """One waiter per event id, the first: the same id twice in one INSERT is
    stored once, and the later ones are duplicates."""
    firsts: dict[str, _Waiter] = {}
    for waiter in batch:
        firsts.setdefault(waiter.values["stripe_event_id"], waiter)
    return list(firsts.values())


def _finish(batch: list[_Waiter], *, error: BaseException) -> None:
    for waiter in batch:
        waiter.error = error
        waiter.done = True
