"""Flask extensions, created unbound and attached in the factory, and the
request-scoped database session.

Web side only: the core never imports this module.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_limiter import Limiter
from flask_talisman import Talisman
from flask_wtf import CSRFProtect
from flask_wtf.csrf import generate_csrf
from itsdangerous import (
    Serializer,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
    base64_encode,
)
from sqlalchemy.orm import Session
from werkzeug.http import dump_cookie

from app.db import Database

csrf = CSRFProtect()
babel = Babel()


class Headers(Talisman):
    """Flask-Talisman, computing once what is the same for every request.

    - Each policy's header text is built once instead of on every response
      (profiled: a twentieth of a GET /donate). The policies are constants
      once the app is set up (app.factory, app.appeals); a request with a CSP
      nonce is built as Flask-Talisman does.
    - A view's options (Flask-Talisman's defaults under the view's own
      `talisman_view_options`) are merged once per view function instead of
      three times a request, and the https redirect is looked at only for a
      view whose options force it.
    - The headers a response gets are those Flask-Talisman itself writes,
      recorded once per view and kind of connection (https or not: HSTS) on
      a blank header set and then assigned to each response as Flask-Talisman
      assigns them; a request with a CSP nonce is answered by Flask-Talisman
      directly.

    These override Flask-Talisman's private `_parse_policy`,
    `_get_local_options`, `_force_https` and `_set_response_headers` (it has
    no public way to do this); every cache is emptied by `init_app`, whose
    settings they follow.
    """

    _parsed: dict[int, tuple[Any, str]] = {}  # replaced whole, never mutated
    _options: dict[int, tuple[Any, dict[str, Any]]] = {}  # the same
    _written: dict[tuple[int, bool], tuple[Any, list[tuple[str, str]], frozenset[str]]] = {}

    def init_app(self, app: Flask, **kwargs: Any) -> None:
        super().init_app(app, **kwargs)
        self._parsed, self._options, self._written = {}, {}, {}

    def _parse_policy(self, policy: Any) -> str:
        if isinstance(policy, str) or hasattr(request, "csp_nonce"):
            return str(super()._parse_policy(policy))
        found = self._parsed.get(id(policy))
        if found is None or found[0] is not policy:  # kept: its id is never reused
            found = (policy, str(super()._parse_policy(policy)))
            self._parsed = {**self._parsed, id(policy): found}
        return found[1]

    def _get_local_options(self) -> dict[str, Any]:
        view = current_app.view_functions.get(request.endpoint)  # type: ignore[arg-type]
        found = self._options.get(id(view))
        if found is None or found[0] is not view:  # kept with it: its id is never reused
            found = (view, dict(super()._get_local_options()))
            self._options = {**self._options, id(view): found}
        return found[1]

    def _force_https(self) -> Any:
        """Flask-Talisman's, its redirect asked for only where a view's options
        force https (this site's never do: the proxy in front redirects); the
        session-cookie rule it applies on every request is applied the same."""
        if self.session_cookie_secure and not self.app.debug:
            self.app.config["SESSION_COOKIE_SECURE"] = True
        if self._get_local_options()["force_https"]:
            return super()._force_https()
        return None

    def _set_response_headers(self, response: Any) -> Any:
        here = request._get_current_object()  # type: ignore[attr-defined]  # one context look-up
        if hasattr(here, "csp_nonce"):
            return super()._set_response_headers(response)
        view = current_app.view_functions.get(here.endpoint)
        secure = here.is_secure or here.headers.get("X-Forwarded-Proto") == "https"
        key = (id(view), secure)
        found = self._written.get(key)
        if found is None or found[0] is not view:
            blank = Response()
            blank.headers.clear()
            super()._set_response_headers(blank)
            written = list(blank.headers.items())
            found = (view, written, frozenset(name.lower() for name, _ in written))
            self._written = {**self._written, key: found}
        headers = response.headers
        if found[2].isdisjoint(name.lower() for name, _ in headers):
            headers.extend(found[1])  # none there yet: added as `headers[name] = value` adds them
        else:
            for name, value in found[1]:
                headers[name] = value
        return response

    def recorded(self, app: Flask, view: Any, secure: bool) -> list[tuple[str, str]] | None:
        """The headers `_set_response_headers` writes for `view` on a response
        (https or not, without a CSP nonce), once a response of that view has
        recorded them; None before, or where a request of the view may do more
        than write them (a nonce, an https redirect). For a handler that
        answers the view without Flask (app.donate.first_visit)."""
        options = self._options.get(id(view))
        found = self._written.get((id(view), secure))
        if options is None or options[0] is not view or found is None or found[0] is not view:
            return None
        if options[1]["force_https"] or options[1]["content_security_policy_nonce_in"]:
            return None
        if self.session_cookie_secure and not app.debug:  # what its before-request hook does
            app.config["SESSION_COOKIE_SECURE"] = True
        return found[1]


talisman = Headers()  # security headers; configured in app.factory


SHORT_PAYLOAD = 200  # bytes of session JSON below which zlib is not tried


class KeptKeySigner(TimestampSigner):
    """itsdangerous's timestamp signer, deriving its key from the newest secret
    once instead of on every signature (an HMAC each time: the key and the
    salt of a signer never change). Verifying still derives each key it tries."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        derived: bytes | None = self.__dict__.get("_derived")
        if derived is None:
            derived = self._derived = super().derive_key()
        return derived


class KeptSignerSerializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer, signing with one signer made
    once (itsdangerous makes a new one for every dumps) whose key is derived
    once. A signer holds only the keys, salt and settings, nothing of a
    request, so threads may share it. What it writes is byte for byte what
    URLSafeTimedSerializer writes with the same keys and salt."""

    default_signer = KeptKeySigner

    @cached_property
    def _signer(self) -> Signer:
        return super().make_signer()

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is None:
            return self._signer
        return super().make_signer(salt)


class SessionSerializer(KeptSignerSerializer):
    """The session cookie's serializer: a KeptSignerSerializer that does not
    try zlib on a short payload."""

    def dump_payload(self, obj: Any) -> bytes:
        """As itsdangerous writes an uncompressed payload, without first trying
        zlib on one too short to gain from it (a new session holds one CSRF
        token: zlib's try cost 16 us of CPU in a worker, more than the rest of
        the signing, and never won). A longer one is written as itsdangerous
        writes it, compressed when that is shorter; `loads` reads both."""
        json = Serializer.dump_payload(self, obj)
        if len(json) >= SHORT_PAYLOAD:
            return super().dump_payload(obj)
        return base64_encode(json)


def _openssl_sha1(signer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Signer settings with SHA-1 given as hashlib's own constructor where they
    name SHA-1 through a wrapper function (itsdangerous's and Flask's default):
    Python's hmac takes OpenSSL's HMAC only for hashlib's constructors or a
    name, and falls back to its pure-Python one for anything else (2.6 against
    1.5 us a signature, measured). The same digest, so the same signatures."""
    digest = signer_kwargs.get("digest_method")
    if digest is SecureCookieSessionInterface.digest_method or digest is _ITSDANGEROUS_SHA1:
        return {**signer_kwargs, "digest_method": hashlib.sha1}
    return signer_kwargs


_ITSDANGEROUS_SHA1 = Signer.default_digest_method


CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's, for generate_csrf and validate_csrf alike


def csrf_token() -> str:
    """Flask-WTF's `generate_csrf()`, the same token (a random value kept in
    the session, signed with Flask-WTF's key and salt, cached on `g` for the
    request) from a serializer made once per key: Flask-WTF makes one per
    call, and its signer derives the key again (profiled: a tenth of a GET
    /donate's CPU in process). The token is written as Flask-WTF's own
    URLSafeTimedSerializer writes it, zlib's try included, so Flask-WTF's
    `validate_csrf` (which stays the only check) reads it as its own
    (tests/integration/test_csrf_token.py). Without a key or a field name
    Flask-WTF's own function is called, to fail as it fails."""
    config = current_app.config
    secret_key = config.get("WTF_CSRF_SECRET_KEY", current_app.secret_key)
    field_name = config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    if secret_key is None or field_name is None:
        return str(generate_csrf())
    here, kept = g._get_current_object(), session._get_current_object()  # type: ignore[attr-defined]
    if field_name not in here:
        if field_name not in kept:
            kept[field_name] = new_csrf_value()
        try:
            token = sign_csrf_value(secret_key, kept[field_name])
        except TypeError:  # as Flask-WTF: a session value JSON cannot write is replaced
            kept[field_name] = new_csrf_value()
            token = sign_csrf_value(secret_key, kept[field_name])
        setattr(here, field_name, token)
    found: str = here.get(field_name)
    return found


def new_csrf_value() -> str:
    """The random value a session keeps for Flask-WTF's token, made as it makes it."""
    return hashlib.sha1(os.urandom(64)).hexdigest()  # noqa: S324 (Flask-WTF's)


def sign_csrf_value(secret_key: str | bytes, value: Any) -> str:
    """`value` signed as Flask-WTF's generate_csrf signs it (its salt and
    serializer), by a serializer made once per key."""
    return str(_csrf_serializer(secret_key).dumps(value))


_CSRF_SERIALIZERS: dict[str | bytes, KeptSignerSerializer] = {}  # replaced whole, never mutated


def _csrf_serializer(secret_key: str | bytes) -> KeptSignerSerializer:
    global _CSRF_SERIALIZERS
    found = _CSRF_SERIALIZERS.get(secret_key)
    if found is None:
        found = KeptSignerSerializer(
            secret_key, salt=CSRF_SALT, signer_kwargs={"digest_method": hashlib.sha1}
        )
        _CSRF_SERIALIZERS = {secret_key: found}  # a new key replaces the old one
    return found


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session."""

    def get_signing_serializer(self, app: Flask) -> Any:
        """Flask's serializer, made once per secret key (and fallbacks) instead
        of twice a request (profiled: a tenth of a GET /donate), as a
        SessionSerializer with the same keys, salt, serializer and signer
        settings. It holds only the keys and settings, nothing of a request, so
        threads may share it."""
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._serializers.get(keys)
        if cached is None:
            made = super().get_signing_serializer(app)
            if made is None:
                return None
            cached = SessionSerializer(
                made.secret_keys,
                salt=made.salt,
                serializer=made.serializer,
                signer=KeptKeySigner,
                signer_kwargs=_openssl_sha1(made.signer_kwargs),
            )
            self._serializers = {keys: cached}  # a new key replaces the old one
        return cached

    def open_session(self, app: Flask, request: Any) -> Any:
        """Flask's, without parsing the cookies of a request that sent none (a
        first visit): its session is a new, empty one, as Flask makes it."""
        if "HTTP_COOKIE" not in request.environ and self.get_signing_serializer(app) is not None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        """Flask's. A first visit's (a session read and then written, on a
        response with no Vary header yet) gets the same two headers Flask
        writes, in its order, without parsing Vary twice into a HeaderSet
        that then writes it back (profiled: a third of saving the session);
        every other case is Flask's own code."""
        if (
            not session
            or not session.accessed
            or not self.should_set_cookie(app, session)
            or any(name.lower() == "vary" for name, _ in response.headers)
        ):
            super().save_session(app, session, response)
            return
        response.headers.add("Vary", "Cookie")  # as `response.vary.add("Cookie")` writes it here
        response.set_cookie(
            self.get_cookie_name(app),
            self.get_signing_serializer(app).dumps(dict(session)),
            expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            partitioned=self.get_cookie_partitioned(app),
            samesite=self.get_cookie_samesite(app),
        )

    def new_session_cookie(self, app: Flask, data: dict[str, Any]) -> str | None:
        """The Set-Cookie value `save_session` writes for a new session holding
        `data` (signed, with the app's cookie settings, as `response.set_cookie`
        writes it in a request), for a handler that answers without Flask
        (app.donate.first_visit); None where the app cannot sign one."""
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        session = self.session_class(data)
        cookie: str = dump_cookie(
            self.get_cookie_name(app),
            serializer.dumps(dict(session)),
            expires=self.get_expiration_time(app, session),
            path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app),
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            max_size=app.config["MAX_COOKIE_SIZE"],  # Flask's Response.max_cookie_size
            samesite=self.get_cookie_samesite(app),
            partitioned=self.get_cookie_partitioned(app),
        )
        return cookie

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
