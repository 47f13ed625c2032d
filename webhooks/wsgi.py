"""POST /webhooks/stripe's own WSGI handler, in front of the site.

Stripe's deliveries need none of what the site does for a person: no session,
no CSRF token (Stripe signs), no language, no rate limit (a 429 would only make
Stripe deliver again), no staff gate, no CSP nonce, no routing or templates.
Profiled under gunicorn, the site's request hooks (Flask-Limiter,
Flask-Talisman, Flask-WTF, the cookie session, Babel, the gates) were three
quarters of a stored webhook's CPU, and after them Flask's own request
handling (contexts, routing, response objects) was a fifth of what was left;
so the path is answered by a plain WSGI handler that shares the site's
settings, extensions and database pools and keeps only what the route needs:
the request id (X-Request-Id, taken or made, in the log lines and the answer),
the latency histogram (endpoint `webhooks.receive_stripe_event`), fixed
security headers, and JSON answers for every status (405 for another method,
413 for a body over the limit, 503 when the database is unavailable, 500 for
anything unexpected, logged by type and place only).
`WebhookDispatch` sends that one path there and every other request to the site.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from flask import Flask
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

from app.db import Database, database_unavailable
from app.observe.logs import REQUEST_ID, describe, request_id_from
from app.observe.metrics import REQUEST_SECONDS
from webhooks.receiver import MAX_BODY_BYTES, Answer, Store, receive_stripe_event, refuse

log = logging.getLogger(__name__)

PATH = "/webhooks/stripe"
ENDPOINT = "webhooks.receive_stripe_event"  # the latency histogram's label, as Flask named it
# The answer is JSON for Stripe, never a page: nothing in it may run or be framed.
HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)
HSTS = "max-age=31536000"  # production's, as Flask-Talisman sends it on the site
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
NOT_ALLOWED = Answer(
    405,
    {"error": "The method is not allowed for the requested URL."},
    (("Allow", "OPTIONS, POST"),),
)
ALLOWED = Answer(200, {}, (("Allow", "OPTIONS, POST"),))


class WebhookDispatch:
    """WSGI: the webhook path to its own handler, everything else to the site."""

    def __init__(self, site: Callable[..., Iterable[bytes]], webhooks: WebhookApp) -> None:
        self.site = site
        self.webhooks = webhooks

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return self.webhooks(environ, start_response)
        return self.site(environ, start_response)


class WebhookApp:
    """The receiver's WSGI handler, sharing `site`'s config, extensions and pools
    (looked up per request: a test may swap an extension after the app is made)."""

    def __init__(self, site: Flask) -> None:
        self.config = site.config
        self.extensions = site.extensions
        self.store = Store(self.database)
        headers = list(HEADERS)
        if site.config["APP_ENV"] == "production":
            headers.append(("Strict-Transport-Security", HSTS))
        self.headers = tuple(headers)
        self._latency: dict[int, Any] = {}

    def database(self) -> Database:
        db: Database = self.extensions["donations.db"]
        return db

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = REQUEST_ID.set(request_id)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            try:
                answer = self.answer(method, environ)
            except Exception as exc:  # answered, logged by type and place
                answer = self.unexpected(method, exc)
            body = orjson.dumps(answer.body) + b"\n"
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *answer.headers,
                *self.headers,
                ("X-Request-Id", request_id),
            ]
            start_response(STATUS_LINES[answer.status], headers)
            self.observe(method, answer.status, started)
            return [body]
        finally:
            REQUEST_ID.reset(token)

    def answer(self, method: str, environ: dict[str, Any]) -> Answer:
        if method == "OPTIONS":  # as Flask answered it
            return ALLOWED
        if method != "POST":
            return NOT_ALLOWED
        length = get_content_length(environ)
        if length is not None and length > MAX_BODY_BYTES:
            return refuse(413, "body too large")
        try:
            if length is not None:
                body = environ["wsgi.input"].read(length)
            else:
                # A body without Content-Length (chunked) is read up to one byte
                # past the limit, never further (Werkzeug stops there): over is 413.
                body = get_input_stream(environ, max_content_length=MAX_BODY_BYTES + 1).read()
        except RequestEntityTooLarge:
            return refuse(413, "body too large")
        except ClientDisconnected:
            return refuse(400, "the body ended early")
        if len(body) > MAX_BODY_BYTES:
            return refuse(413, "body too large")
        payments = self.extensions.get("donations.payments")
        return receive_stripe_event(
            body,
            environ.get("HTTP_STRIPE_SIGNATURE"),
            self.config["STRIPE_WEBHOOK_SECRETS"],
            bool(getattr(payments, "livemode", False)),
            self.store,
        )

    @staticmethod
    def unexpected(method: str, exc: Exception) -> Answer:
        if database_unavailable(exc):
            log.error("database unavailable on %s %s: %s", method, PATH, describe(exc))
            return Answer(503, {"error": "database unavailable"}, (("Retry-After", "5"),))
        # The type and place only: a traceback or an SQL error carries values.
        log.error("unhandled error on %s %s: %s", method, PATH, describe(exc))
        return Answer(500, {"error": "internal error"})

    def observe(self, method: str, status: int, started: float) -> None:
        """The latency histogram, labelled as the site's requests are (its
        child per label set looked up once: each lookup takes a lock)."""
        elapsed = time.perf_counter() - started
        if method != "POST":  # the method is the client's: no cache for its spellings
            REQUEST_SECONDS.labels("unmatched", method, str(status)).observe(elapsed)
            return
        child = self._latency.get(status)
        if child is None:
            child = self._latency[status] = REQUEST_SECONDS.labels(ENDPOINT, method, str(status))
        child.observe(elapsed)


def webhook_app(site: Flask) -> WebhookApp:
    """The receiver's handler, sharing `site`'s config, extensions and pools."""
    return WebhookApp(site)
