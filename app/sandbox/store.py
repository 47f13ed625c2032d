"""The sandbox's persistence: Stripe-shaped objects as JSON rows in
`sandbox_objects` (insert/replace, look-ups, events in delivery order) and
the idempotency keys of Checkout Session creation. Writes go through the
caller's session and only flush; never commits, never builds objects."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.db import Database
from app.payments import PaymentsError
from app.sandbox.models import SandboxObject


def reader_engine(database: Database) -> Engine:
    """Look-ups run while a worker holds a write transaction: on SQLite (where
    our engine begins every transaction IMMEDIATE) they read through a plain
    connection that takes no write lock; elsewhere through the app's engine."""
    if database.dialect != "sqlite":
        return database.engine
    url = make_url(database.url)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def read(reader: Engine, object_id: str, object_type: str) -> dict[str, Any]:
    """The object of that id and type, read outside the caller's transaction."""
    with reader.connect() as conn:
        raw = conn.execute(
            select(SandboxObject.json).where(
                SandboxObject.id == object_id, SandboxObject.type == object_type
            )
        ).scalar_one_or_none()
    if raw is None:
        raise PaymentsError("not_found", f"No such {object_type}")
    found: dict[str, Any] = json.loads(raw)
    return found


def read_all(reader: Engine, object_type: str) -> list[dict[str, Any]]:
    with reader.connect() as conn:
        rows = conn.execute(
            select(SandboxObject.json).where(SandboxObject.type == object_type)
        ).scalars()
        return [json.loads(raw) for raw in rows]


def load(session: Session, object_id: str) -> dict[str, Any] | None:
    row = session.get(SandboxObject, object_id)
    if row is None:
        return None
    found: dict[str, Any] = json.loads(row.json)
    return found


def require(session: Session, object_id: str) -> dict[str, Any]:
    found = load(session, object_id)
    if found is None:
        raise PaymentsError("not_found", "No such object")
    return found


def save(session: Session, obj: dict[str, Any], now: datetime) -> None:
    """Insert or replace `obj` under its id."""
    body = json.dumps(obj, separators=(",", ":"))
    row = session.get(SandboxObject, obj["id"])
    if row is None:
        session.add(SandboxObject(id=obj["id"], type=obj["object"], json=body, created_at=now))
    else:
        row.json = body


def save_events(session: Session, items: list[dict[str, Any]], now: datetime) -> None:
    """Store one action's events, undelivered."""
    # A microsecond apart, so delivery keeps this order.
    for index, item in enumerate(items):
        session.add(
            SandboxObject(
                id=item["id"],
                type="event",
                json=json.dumps(item, separators=(",", ":")),
                created_at=now + timedelta(microseconds=index),
            )
        )
    session.flush()


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def _params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(params).encode()).hexdigest()


def _key_id(idempotency_key: str) -> str:
    return "idem_" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def remembered_response(
    session: Session, idempotency_key: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The response first given for this key, or None for a new key; the
    same key with other parameters is an error (as Stripe)."""
    remembered = load(session, _key_id(idempotency_key))
    if remembered is None:
        return None
    if remembered["params_hash"] != _params_hash(params):
        raise PaymentsError(
            "invalid",
            "Keys for idempotent requests can only be used with the same "
            "parameters they were first used with.",
        )
    response: dict[str, Any] = remembered["response"]
    return response


def remember_response(
    session: Session,
    idempotency_key: str,
    params: dict[str, Any],
    response: dict[str, Any],
    now: datetime,
) -> None:
    save(
        session,
        {
            "id": _key_id(idempotency_key),
            "object": "sandbox.idempotency_key",
            "params_hash": _params_hash(params),
            "response": response,
        },
        now,
    )
