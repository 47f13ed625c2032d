"""Where a checkout's statements run (app.donate.checkout): one after another
on one connection that the caller commits. SQLAlchemy's Core on a
connection (`CoreStatements`: SQLite, and tests), or a raw DBAPI cursor
(`CursorStatements`: PostgreSQL in autocommit, the view's, where
SQLAlchemy's connection and result objects cost more CPU than the two
statements themselves, profiled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Dialect

from app.db import driver_sql, execute_prepared


class Statements(Protocol):
    """Where a checkout's statements run, one after another on one
    connection; the caller commits."""

    dialect: str

    def first(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of `statement` (built once, as execute_prepared
        takes it) run with `params`, or None."""
        ...


class CoreStatements:
    """On an SQLAlchemy connection (execute_prepared)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name

    def first(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any] | None:
        row = execute_prepared(self.connection, statement, params).first()
        return None if row is None else tuple(row)


class CursorStatements:
    """On a DBAPI cursor of `dialect`'s driver (psycopg), each statement sent
    as execute_prepared sends it (app.db.driver_sql)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.sql_dialect = dialect
        self.dialect = dialect.name

    def first(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any] | None:
        sql, defaults = driver_sql(statement, self.sql_dialect)
        self.cursor.execute(sql, {**defaults, **params} if defaults else params)
        row: Sequence[Any] | None = self.cursor.fetchone()
        return row
