"""Flask extensions, created unbound and attached in the factory, and the
request-scoped database session.

Web side only: the core never imports this module.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, has_request_context, request
from flask_babel import Babel
from flask_talisman import Talisman
from flask_wtf import CSRFProtect
from sqlalchemy.orm import Session

from app.db import Database

csrf = CSRFProtect()
babel = Babel()
talisman = Talisman()  # security headers; configured in app.factory


def database() -> Database:
    db: Database = current_app.extensions["donations.db"]
    return db


def db_session() -> Session:
    """The session of this request (or CLI command); closed at teardown, never
    committed here: the view that writes commits once."""
    if "db_session" not in g:
        # A page that only reads (GET, HEAD) must not hold SQLite's write lock
        # while it streams: a slow CSV download would stop the webhooks.
        reading = has_request_context() and request.method in ("GET", "HEAD")
        g.db_session = database().session(immediate=not reading)
    session: Session = g.db_session
    return session


def close_db_session(_exc: BaseException | None = None) -> None:
    session: Any = g.pop("db_session", None)
    if session is not None:
        session.close()
