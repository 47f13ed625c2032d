"""Database plumbing: our DeclarativeBase (naming convention, UTC datetimes),
engines for SQLite and PostgreSQL, and the session factory; statements run
prepared (`execute_prepared`), and rows inserted or read by Core made into
the session's objects (`insert_missing_entity`, `rows_by`) for the posting
path.

Imports no Flask. Nothing here commits: the edge (view, webhook route, worker,
CLI) owns the transaction.

Why one module: the Core row helpers depend on what only this module defines
together (UTCDateTime's processing, which they skip for aware datetimes, and
the prepared execution they run on), and every model module imports Base
from here; split, the pieces would import each other.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    DateTime,
    Dialect,
    MetaData,
    Table,
    bindparam,
    create_engine,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import (
    DeclarativeBase,
    Session,
    configure_mappers,
    make_transient_to_detached,
    object_session,
    sessionmaker,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import TypeDecorator

# Connections kept by the single-statement pool: a gunicorn worker's threads
# (config/gunicorn.conf.py, 8 by default) each hold one at most.
T = TypeVar("T")

SINGLE_STATEMENT_POOL = 8
# An execution option of ours: this connection's SQLite transactions begin DEFERRED.
_DEFERRED_OPTION = "donations_sqlite_deferred"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def one_of(column: str, values: Iterable[str]) -> str:
    """SQL for a CHECK constraint: `column` holds one of `values`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def dialect_of(target: Session | Connection) -> str:
    """ "postgresql" or "sqlite": the database behind a session or a connection."""
    bind = target.get_bind() if isinstance(target, Session) else target
    return str(bind.dialect.name)


def insert_of(dialect: str) -> Any:
    """The dialect's INSERT (with ON CONFLICT): "postgresql" or "sqlite"."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def insert_for(session: Session) -> Any:
    """The dialect's INSERT (with ON CONFLICT) for this session's database."""
    return insert_of(dialect_of(session))


@cache
def _insert_missing_statement(
    dialect: str, table: Table, index: tuple[str, ...], returning: str | None
) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).on_conflict_do_nothing(index_elements=list(index))
    return statement.returning(table.c[returning]) if returning else statement


def insert_missing(
    session: Session,
    model: Any,
    values: Mapping[str, Any],
    *,
    index: Sequence[str],
    returning: str | None = None,
) -> Any:
    """INSERT `values` into `model`'s table unless a row with the same
    `index` columns exists (ON CONFLICT DO NOTHING), after flushing the
    session as autoflush would; returns the Core result (one row with the
    `returning` column when inserted). The statement is built once per
    table: on the worker's path building it anew cost more than running it."""
    session.flush()
    dialect = dialect_of(session)
    table = model.__table__
    if dialect == "postgresql" and _plain_columns(table):
        full = _with_defaults(table, values)
        statement = _insert_returning(table, tuple(full), tuple(index), returning)
        return execute_prepared(session, statement, full)
    statement = _insert_missing_statement(dialect, table, tuple(index), returning)
    return session.connection().execute(statement, dict(values))


@cache
def _insert_entity_statement(dialect: str, model: Any, index: tuple[str, ...]) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(model).on_conflict_do_nothing(index_elements=list(index)).returning(model)


def insert_missing_entity(
    session: Session, model: Any, values: Mapping[str, Any], *, index: Sequence[str]
) -> Any:
    """Like `insert_missing`, but returns the new row as an object of `model`
    (in the session, as if loaded), or None when a row with the same `index`
    columns was there already: the caller then reads that one. Saves the
    read after every insert that inserts.

    On PostgreSQL, for a table whose columns need no type processing, a Core
    INSERT ... RETURNING id built once (`execute_prepared`) with every column
    given (Python-side defaults filled in here), and the object made from
    the values: the ORM's bulk insert cost several times the statement."""
    session.flush()
    dialect = dialect_of(session)
    table = model.__table__
    if dialect == "postgresql" and _plain_columns(table):
        full = _with_defaults(table, values)
        (key,) = table.primary_key.columns.keys()
        statement = _insert_returning(table, tuple(full), tuple(index), key)
        new_id = execute_prepared(session, statement, full).scalar()
        if new_id is None:
            return None
        return _as_loaded(session, model, {**full, key: new_id})
    statement = _insert_entity_statement(dialect, model, tuple(index))
    return session.scalars(
        statement, dict(values), execution_options={"populate_existing": True}
    ).first()


@cache
def _plain_columns(table: Table) -> bool:
    """Whether `insert_missing_entity`'s Core path can insert into `table`:
    one primary key, every column's values sent to the driver as they are
    (no type processing but UTCDateTime's, which aware datetimes skip), and
    every default computable here (none on the server)."""
    if len(table.primary_key.columns) != 1:
        return False
    for column in table.columns:
        if isinstance(column.type, TypeDecorator) and not isinstance(column.type, UTCDateTime):
            return False
        if column.primary_key:
            continue
        default = column.default
        if column.server_default is not None or (
            default is not None
            and not (getattr(default, "is_callable", False) or getattr(default, "is_scalar", False))
        ):
            return False
    return True


def _with_defaults(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` and, for every other column but the primary key, its
    Python-side default (None without one), as the ORM's insert would."""
    full = dict(values)
    for column in table.columns:
        if column.primary_key or column.key in full:
            continue
        default = column.default
        if default is None:
            full[column.key] = None
        elif getattr(default, "is_callable", False):
            full[column.key] = default.arg(None)  # type: ignore[attr-defined]
        else:  # scalar (`_plain_columns`)
            full[column.key] = default.arg  # type: ignore[attr-defined]
    return full


@cache
def _insert_returning(
    table: Table, columns: tuple[str, ...], index: tuple[str, ...], returning: str | None
) -> Any:
    statement = (
        pg_insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
        .on_conflict_do_nothing(index_elements=list(index))
    )
    return statement.returning(table.c[returning]) if returning else statement


def _as_loaded(session: Session, model: Any, row: Mapping[str, Any]) -> Any:
    """The object of `model` for a row with every column (by key) read or
    written by Core, in the session as if the ORM had loaded it: the one
    already in the session when there is one (as a query returns it),
    else a new one, persistent without a statement."""
    mapper = model.__mapper__
    (key,) = model.__table__.primary_key.columns.keys()
    if not _attributes_are_columns(model):
        raise ValueError(f"{model.__name__}: attributes and column keys differ")
    present = session.identity_map.get(mapper.identity_key_from_primary_key([row[key]]))
    if present is not None:
        return present
    # The row's values straight into the new object's state (as the ORM's
    # loading does), not through the constructor's instrumented attributes:
    # about 5% of the mix's CPU in the worker went to setting them (profiled).
    # The mappers must be configured first (a query does it; this path makes
    # no query): in a fresh process the attributes' implementations are not
    # there yet. Free once they are.
    configure_mappers()
    entity = mapper.class_manager.new_instance()
    entity.__dict__.update(row)
    make_transient_to_detached(entity)
    session.add(entity)
    return entity


def load_entity(session: Session, model: Any, row: Mapping[str, Any] | None) -> Any:
    """`_as_loaded` for a row a Core SELECT of every column of `model`'s
    table returned (None: None), with UTC datetimes as UTCDateTime reads
    them. For the posting path, where the ORM's loading cost several times
    the statement; `_plain_columns(model.__table__)` must hold."""
    if row is None:
        return None
    values = dict(row)
    for name in _datetime_columns(model.__table__):
        value = values[name]
        if value is not None:
            values[name] = (
                value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            )
    return _as_loaded(session, model, values)


def rows_by(
    session: Session, model: Any, key: str, value: Any, *, limit: int | None = None
) -> list[Any]:
    """The objects of `model` whose column `key` equals `value` (at most
    `limit`), as `session.scalars(select(model).where(...))` gives them
    (after the same autoflush; an object already in the session is returned
    as it is there). On PostgreSQL, for a table `_plain_columns` accepts, a
    Core SELECT built once and run prepared, its rows made into objects
    without the ORM's loading (`load_entity`): on the posting path the
    ORM's query cost several times the statement. Elsewhere the ORM query."""
    table = model.__table__
    if dialect_of(session) != "postgresql" or not _plain_columns(table):
        query = select(model).where(getattr(model, key) == value)
        if limit is not None:
            query = query.limit(limit)
        return list(session.scalars(query))
    session.flush()
    result = execute_prepared(session, _rows_by_statement(table, key, limit), {"value": value})
    return [load_entity(session, model, row) for row in result.mappings()]


def first_by(session: Session, model: Any, key: str, value: Any) -> Any:
    """`rows_by`'s first object, or None."""
    found = rows_by(session, model, key, value, limit=1)
    return found[0] if found else None


def first_loaded(
    session: Session, model: Any, core: Any, orm: Any, params: Mapping[str, Any]
) -> Any:
    """The first object of `model` a SELECT finds, or None: on PostgreSQL
    `core` (a Core SELECT of every column of `model`'s table, built once,
    `_plain_columns` holding) run prepared after the autoflush and its row
    made into the object as `rows_by` does; elsewhere `orm`, the same query
    through the ORM."""
    if dialect_of(session) != "postgresql":
        return session.scalars(orm, dict(params)).first()
    session.flush()
    row = execute_prepared(session, core, params).mappings().first()
    return load_entity(session, model, row)


def update_record(entity: Any, values: Mapping[str, Any]) -> None:
    """Set `values` (attribute: value) on a record, only those that change.
    On PostgreSQL, for a persistent record with nothing else pending and a
    table `_plain_columns` accepts, one prepared UPDATE of those columns and
    the table's `onupdate` ones (updated_at), the object then told it holds
    what the row holds: the ORM's flush of the same UPDATE cost several times
    the statement (12.7 % of the worker's samples on the mix for 0.36 updates
    per event, py-spy). Otherwise the attributes are set for the next flush."""
    changed = {k: v for k, v in values.items() if getattr(entity, k) != v}
    if not changed:
        return
    session = object_session(entity)
    table = type(entity).__table__
    state = inspect(entity)
    onupdate = _onupdate_columns(table)
    if (
        session is None
        or onupdate is None
        or dialect_of(session) != "postgresql"
        or not state.persistent
        or state.modified
        or not _plain_columns(table)
        or not _attributes_are_columns(type(entity))
    ):
        for key, value in changed.items():
            setattr(entity, key, value)
        return
    for column in onupdate:
        if column.key not in changed:
            changed[column.key] = column.onupdate.arg(None)
    (key,) = table.primary_key.columns.keys()
    statement = _update_statement(table, key, tuple(sorted(changed)))
    execute_prepared(session, statement, {**changed, "_key": getattr(entity, key)})
    for name, value in changed.items():
        set_committed_value(entity, name, value)


@cache
def _onupdate_columns(table: Table) -> tuple[Any, ...] | None:
    """The columns the ORM gives a value on every UPDATE (updated_at), or
    None when one of them is not a Python callable (`update_record` then
    leaves the UPDATE to the flush)."""
    columns = tuple(c for c in table.columns if c.onupdate is not None)
    if any(not getattr(c.onupdate, "is_callable", False) for c in columns):
        return None
    return columns


@cache
def _update_statement(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam("_key", type_=table.c[key].type))
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    )


@cache
def _rows_by_statement(table: Table, key: str, limit: int | None) -> Any:
    query = select(*table.columns).where(
        table.c[key] == bindparam("value", type_=table.c[key].type)
    )
    return query.limit(limit) if limit is not None else query


@cache
def _attributes_are_columns(model: Any) -> bool:
    mapper = model.__mapper__
    return all(
        mapper.get_property_by_column(column).key == column.key
        for column in model.__table__.columns
    )


@cache
def _datetime_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.key for c in table.columns if isinstance(c.type, UTCDateTime))


@cache
def _driver_sql(statement: Any, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    compiled = statement.compile(dialect=dialect)
    if compiled.post_compile_params:
        raise ValueError("a statement run by execute_prepared may not expand IN lists")
    defaults = {
        name: bind.value
        for bind, names in compiled.bind_names.items()
        for name in [names]
        if bind.value is not None
    }
    return str(compiled), defaults


def execute_prepared(
    target: Session | Connection, statement: Any, params: Mapping[str, Any]
) -> Any:
    """Run a statement built once (a constant of the posting path) with
    `params` on the session's connection (or on `target`, a connection). On
    PostgreSQL it is compiled once to the driver's SQL and sent as is
    (psycopg prepares it after a few uses): compiling and processing its
    parameters per call cost more than running it. The parameters must need
    no type processing (aware datetimes, ints, strings), and the rows come
    back as the driver reads them (`PreparedResult`). Elsewhere it is
    executed as Core.

    For a session (the worker's and sync's posting path) the statement goes
    to psycopg's cursor directly: SQLAlchemy's execution and result setup
    around it cost about three times psycopg's own work (200 against 60 us
    of CPU per statement, measured). Its statement events still fire, and a
    driver error is raised as SQLAlchemy's (`DBAPIError`), the connection
    invalidated when it is gone, as SQLAlchemy's own execution does. A
    connection (the checkout's single statements) keeps SQLAlchemy's
    execution."""
    connection = target.connection() if isinstance(target, Session) else target
    if connection.dialect.name != "postgresql":
        return connection.execute(statement, dict(params))
    if not isinstance(target, Session):
        sql, defaults = _driver_sql(statement, connection.dialect)
        return connection.exec_driver_sql(sql, {**defaults, **params})
    sql, names, defaults = _positional_sql(statement, connection.dialect)
    merged = {**defaults, **params} if defaults else params
    return _execute_on_driver(connection, sql, tuple([merged[name] for name in names]))


# A parameter of the psycopg dialect's SQL, or a percent sign it doubled.
_PYFORMAT = re.compile(r"%\(([^)]+)\)s|%%")


@cache
def _positional_sql(
    statement: Any, dialect: Dialect
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """`_driver_sql` with PostgreSQL's own placeholders ($1, $2, ...; a name
    used twice is one of them), the parameters' names in their order, and
    the defaults: sent on psycopg's RawCursor, which passes the query as it
    is instead of parsing and converting it on every execute (a fifth of
    psycopg's CPU per statement, measured)."""
    sql, defaults = _driver_sql(statement, dialect)
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PYFORMAT.sub(number, sql), tuple(names), defaults


def _execute_on_driver(connection: Connection, sql: str, params: tuple[Any, ...]) -> PreparedResult:
    raw: Any = connection.connection.driver_connection
    cursor: Any = psycopg.RawCursor(raw)
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params)
        shape = _shapes.get(sql)
        if shape is None:
            shape = _shapes[sql] = _Shape.of(cursor.description)
        rows = cursor.fetchall() if shape.keys else []
        rowcount = cursor.rowcount
    except psycopg.Error as exc:
        gone = connection.dialect.is_disconnect(exc, raw, cursor)
        error = DBAPIError.instance(
            sql, params, exc, psycopg.Error, connection_invalidated=gone, dialect=connection.dialect
        )
        if gone:
            connection.invalidate(exc)
        raise error from exc
    finally:
        cursor.close()
    return PreparedResult(shape, rows, rowcount)


class _Shape:
    """The columns a statement returns: their names, and a row type for them."""

    __slots__ = ("keys", "row")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.row = namedtuple("PreparedRow", keys, rename=True) if keys else tuple  # type: ignore[misc]

    @classmethod
    def of(cls, description: Any) -> _Shape:
        return cls(tuple(column.name for column in description or ()))


# Statement (driver SQL) -> the shape of its rows, found on its first run.
_shapes: dict[str, _Shape] = {}


class PreparedResult:
    """The rows of a statement run by `execute_prepared` on a session, with
    the part of SQLAlchemy's result API the posting path uses (`scalar`,
    `first`, `one`, `all`, `mappings`, `rowcount`); rows as named tuples."""

    __slots__ = ("_rows", "_shape", "rowcount")

    def __init__(self, shape: _Shape, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._shape = shape
        self._rows = rows
        self.rowcount = rowcount

    def keys(self) -> tuple[str, ...]:
        return self._shape.keys

    def __iter__(self) -> Iterator[Any]:
        make = self._shape.row._make if self._shape.keys else tuple  # type: ignore[attr-defined]
        return iter([make(row) for row in self._rows])

    def all(self) -> list[Any]:
        return list(self)

    def first(self) -> Any:
        return next(iter(self), None)

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise NoResultFound("no row") if not self._rows else MultipleResultsFound("rows")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def mappings(self) -> _Mappings:
        keys = self._shape.keys
        return _Mappings([dict(zip(keys, row, strict=True)) for row in self._rows])


class _Mappings(list[dict[str, Any]]):
    """Rows as dicts, with `first`, `one` and `all` as SQLAlchemy's mappings have."""

    def all(self) -> list[dict[str, Any]]:
        return list(self)

    def first(self) -> dict[str, Any] | None:
        return self[0] if self else None

    def one(self) -> dict[str, Any]:
        if len(self) != 1:
            raise NoResultFound("no row") if not self else MultipleResultsFound("rows")
        return self[0]


def driver_sql(statement: Any, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """A statement built once as execute_prepared sends it on PostgreSQL: the
    driver's SQL (compiled once) and the parameters' defaults, for a raw
    DBAPI cursor (app.donate.checkout's statements)."""
    return _driver_sql(statement, dialect)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite hands datetimes back naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is off (see _sqlite_pragmas); emit
        # BEGIN ourselves so SQLAlchemy's transactions are SQLite's. IMMEDIATE:
        # a transaction that reads and then writes (nearly all of ours) takes
        # the write lock up front and so waits its turn (busy_timeout). A plain
        # BEGIN would take it only at the first write, and SQLite answers such
        # an upgrade with SQLITE_BUSY ("database is locked") at once, without
        # waiting, whenever another connection wrote meanwhile. Sessions that
        # only read (or write before they read) may ask for a plain BEGIN:
        # Database.session(immediate=False), so they never hold the write lock.
        # SQLite is the embedded setup (one worker, one host), PostgreSQL the
        # one for concurrency.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_begin(conn: Any) -> None:
    deferred = conn.get_execution_options().get(_DEFERRED_OPTION, False)
    conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """An engine and its session factory, created once per process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(
            self.engine.execution_options(**{_DEFERRED_OPTION: True}), expire_on_commit=False
        )

    @cached_property
    def single_statement_engine(self) -> Engine:
        """On PostgreSQL the same database in autocommit and without the
        pre-ping round trip (a third of a stored webhook's time, profiled), for
        one idempotent statement that its caller retries once on a dropped
        connection (the webhook route); a second pool, as large as a gunicorn
        worker's threads (WEB_THREADS, 8) so none opens and closes a connection
        per request (a smaller one did, measured). On SQLite the engine itself."""
        if self.engine.dialect.name != "postgresql":
            return self.engine
        return make_engine(
            self.url,
            pool_pre_ping=False,
            pool_size=SINGLE_STATEMENT_POOL,
            max_overflow=SINGLE_STATEMENT_POOL,
            isolation_level="AUTOCOMMIT",
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, immediate: bool = True) -> Session:
        """A new session. On SQLite its transactions take the write lock at
        BEGIN (IMMEDIATE) unless `immediate=False`: for a session that reads
        before it could write, only that waits its turn instead of failing
        with "database is locked". Elsewhere the flag changes nothing."""
        return self.sessions() if immediate else self.read_sessions()

    def connect(self, *, immediate: bool = True) -> Connection:
        """A connection of its own (for a temporary table that must outlive a
        transaction); on SQLite its transactions begin as `session` says."""
        engine = (
            self.engine if immediate else self.engine.execution_options(**{_DEFERRED_OPTION: True})
        )
        return engine.connect()

    def dispose(self) -> None:
        if "single_statement_engine" in self.__dict__:
            self.single_statement_engine.dispose()
        self.engine.dispose()


def on_raw_cursor(engine: Engine, fn: Callable[[Any], T]) -> T:
    """`fn(cursor)` on a raw psycopg cursor of `engine` (the single-statement
    pool: autocommit, no pre-ping). A connection the database dropped fails
    the statement, which is then run once more on a fresh one, so `fn` must
    be idempotent; a dropped connection never goes back into the pool. A
    database that is down raises psycopg's OperationalError (a 503 for the
    callers: the webhook route's group commit and the checkout)."""
    for attempt in (1, 2):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                return fn(cursor)
            finally:
                cursor.close()
        except psycopg.OperationalError:
            connection.invalidate()  # never back into the pool
            if attempt == 2:
                raise
        finally:
            connection.close()
    raise AssertionError("unreachable")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (down, restarting, a
    dropped connection, the pool exhausted), not that our code is wrong."""
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        return True  # psycopg's own: the webhook route's raw connection
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError)
    )
