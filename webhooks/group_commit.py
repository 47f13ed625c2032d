"""Group commit for the webhook route on PostgreSQL: the rows of concurrent
deliveries in one process stored by one statement and one commit.

A delivery hands its row to the process's `GroupCommit` and waits. Its writer
thread writes every row waiting as one `INSERT ... VALUES (...), (...) ON
CONFLICT (stripe_event_id) DO NOTHING RETURNING stripe_event_id` in
autocommit: one statement, one commit (flushed to disk with synchronous_commit
on) for all of them. Rows that arrive while a batch is being written wait for
it to end and form the next one, so a lone delivery waits for nobody but the
writer's wake-up and a busy process writes fewer, larger statements (profiled: the statement, its commit and
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
    """The INSERT of `rows` rows, PostgreSQL's own placeholders ($1, $2, ...)
    in STORED_COLUMNS' order, for psycopg's RawCursor: a batch of more than
    four rows is past psycopg's cache of parsed queries (50 parameters), and
    a `%s` query is parsed and converted again on every execute."""
    # Our own column names and placeholders only; the values are parameters.
    width = len(STORED_COLUMNS)
    columns = ", ".join(STORED_COLUMNS)
    values = ", ".join(
        "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
        for row in range(rows)
    )
    return (
        f"INSERT INTO stripe_events ({columns}) VALUES {values}"  # noqa: S608
        " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING stripe_event_id"
    )


class _Waiter:
    """A row handed in, and what became of it. `wake` is held until the
    row's batch is written."""

    __slots__ = ("done", "error", "stored", "values", "wake")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.done = False
        self.stored = False
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit:
    """One per process (and engine): `store` from any number of threads.

    One thread of its own (started on the first row, and again in a process
    forked after that) writes: it takes the oldest rows waiting (at most
    `max_rows`), writes them, wakes each of their threads (only those: a
    Condition's notify_all woke every waiting thread for each batch, a tenth
    of a worker's CPU, profiled) and goes on while rows wait."""

    def __init__(self, engine: Engine, max_rows: int = MAX_ROWS) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: list[_Waiter] = []
        self._writer: threading.Thread | None = None
        # The writer's connection while rows keep coming (writer thread only).
        self._connection: Any | None = None

    @property
    def waiting(self) -> int:
        """Rows handed in and not yet taken into a statement."""
        with self._lock:
            return len(self._queue)

    def store(self, values: dict[str, Any]) -> bool:
        """Store the row (`event_values`); True when this call stored it, False
        for a duplicate. Returns once the row is committed; raises what the
        statement raised (nothing of its batch is stored then)."""
        waiter = _Waiter(values)
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                # A writer gone (this process was forked after it started): its
                # connection is the parent's socket, never to be used or closed here.
                self._connection = None
                self._writer = threading.Thread(
                    target=self._write_forever, name="webhook-group-commit", daemon=True
                )
                self._writer.start()
            self._queue.append(waiter)
            if len(self._queue) == 1:
                self._ready.notify()  # the writer may be waiting for a row
        waiter.wake.acquire()  # until its batch is written
        if waiter.error is not None:
            raise waiter.error
        return waiter.stored

    def _write_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._ready.wait()
                batch = self._queue[: self.max_rows]
                del self._queue[: self.max_rows]
            try:
                self._write(batch)
            except BaseException as exc:  # each waiter not done gets it; the writer goes on
                _finish([w for w in batch if not w.done], error=exc)
            for waiter in batch:
                waiter.wake.release()
            with self._lock:
                idle = not self._queue
            if idle:
                self._put_back()

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
        seen: set[str] = set()
        for waiter in batch:
            event_id = waiter.values["stripe_event_id"]
            waiter.stored = event_id in new and event_id not in seen
            seen.add(event_id)
            waiter.done = True

    def _insert(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The ids of `rows` this statement inserted. One statement in
        autocommit; a dropped connection is replaced and tried once more (as
        app.db.on_raw_cursor does).

        The connection is checked out of the pool once and kept while rows keep
        coming, given back when none waits (`_put_back`): the pool's checkout,
        reset (a rollback call) and checkin for each batch were a third of the
        writer's CPU holding the GIL, profiled under gunicorn."""
        statement = batch_sql(len(rows))
        params = [row[column] for row in rows for column in STORED_COLUMNS]
        for attempt in (1, 2):
            connection = self._connection or self.engine.raw_connection()
            self._connection = None
            try:
                driver: Any = connection.driver_connection
                cursor = psycopg.RawCursor(driver)
                try:
                    cursor.execute(statement, params)
                    found = {found for (found,) in cursor.fetchall()}
                finally:
                    cursor.close()
            except psycopg.OperationalError:
                connection.invalidate()  # never back into the pool
                connection.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                connection.close()  # back to the pool, which resets it
                raise
            self._connection = connection
            return found
        raise AssertionError("unreachable")

    def _put_back(self) -> None:
        """The writer's connection back to the pool (no row waits)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


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
