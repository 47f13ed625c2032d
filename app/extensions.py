"""Flask extensions, created unbound and attached in the factory, and the
request-scoped database session.

Web side only: the core never imports this module.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_limiter import Limiter
from flask_talisman import Talisman
from flask_wtf import CSRFProtect
from sqlalchemy.orm import Session

from app.db import Database

csrf = CSRFProtect()
babel = Babel()


class Headers(Talisman):
    """Flask-Talisman, building each policy's header text once instead of on
    every response (profiled: a twentieth of a GET /donate). The policies are
    constants once the app is set up (app.factory, app.appeals); a request
    with a CSP nonce is built as Flask-Talisman does."""

    _parsed: dict[int, tuple[Any, str]] = {}  # replaced whole, never mutated

    def _parse_policy(self, policy: Any) -> str:
        if isinstance(policy, str) or hasattr(request, "csp_nonce"):
            return str(super()._parse_policy(policy))
        found = self._parsed.get(id(policy))
        if found is None or found[0] is not policy:  # kept: its id is never reused
            found = (policy, str(super()._parse_policy(policy)))
            self._parsed = {**self._parsed, id(policy): found}
        return found[1]


talisman = Headers()  # security headers; configured in app.factory


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session."""

    def get_signing_serializer(self, app: Flask) -> Any:
        """Flask's serializer, made once per secret key (and fallbacks) instead
        of twice a request (profiled: a tenth of a GET /donate). It holds only
        the keys and settings, nothing of a request, so threads may share it."""
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._serializers.get(keys)
        if cached is None:
            cached = super().get_signing_serializer(app)
            self._serializers = {keys: cached}  # a new key replaces the old one
        return cached

    _serializers: dict[Any, Any] = {}  # replaced per instance, never mutated


def client_address() -> str:
    """The client's address: behind `TRUSTED_PROXY_HOPS` proxies, the one
    ProxyFix took from X-Forwarded-For (a hop the client wrote is never it)."""
    return request.remote_addr or "unknown"


def init_limiter(app: Flask) -> Limiter:
    """The app's one Flask-Limiter: Redis (shared by every instance) when
    REDIS_URL is set, memory otherwise, falling back to memory if Redis goes
    away. A moving window, so no burst doubles a cap at a window's edge."""
    redis_url = app.config.get("REDIS_URL")
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=redis_url or "memory://",
        strategy="moving-window",
        key_prefix=str(app.config["RATE_LIMIT_KEY_PREFIX"]),
        in_memory_fallback_enabled=bool(redis_url),
    )
    app.extensions["donations.limiter"] = limiter
    return limiter


def limiter() -> Limiter:
    found: Limiter = current_app.extensions["donations.limiter"]
    return found


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
