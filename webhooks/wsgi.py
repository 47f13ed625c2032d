"""POST /webhooks/stripe's own small Flask app, in front of the site.

Stripe's deliveries need none of what the site does for a person: no session,
no CSRF token (Stripe signs), no language, no rate limit (a 429 would only make
Stripe deliver again), no staff gate, no CSP nonce. Profiled under gunicorn,
the site's request hooks (Flask-Limiter, Flask-Talisman, Flask-WTF, the
cookie session, Babel, the gates) were three quarters of a stored webhook's
CPU, so the route runs in an app of its own that shares the site's settings,
extensions and database pools and keeps only what the route needs: the request
id and latency hooks (app.observe), fixed security headers, and JSON errors.
`WebhookDispatch` sends that one path there and every other request to the site.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import HTTPException

from app import extensions
from app.db import database_unavailable
from app.observe import views as observe
from app.observe.logs import describe

log = logging.getLogger(__name__)

PATH = "/webhooks/stripe"
# The answer is JSON for Stripe, never a page: nothing in it may run or be framed.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
HSTS = "max-age=31536000"  # production's, as Flask-Talisman sends it on the site


class NoSessions(SessionInterface):
    """No cookie session at all: nothing is read from or written to a cookie."""

    def open_session(self, app: Flask, request: Any) -> Any:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class WebhookDispatch:
    """WSGI: the webhook path to its own app, everything else to the site."""

    def __init__(self, site: Callable[..., Iterable[bytes]], webhooks: Flask) -> None:
        self.site = site
        self.webhooks = webhooks.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return self.webhooks(environ, start_response)
        return self.site(environ, start_response)


def webhook_app(site: Flask) -> Flask:
    """The receiver's app, sharing `site`'s config, extensions and pools."""
    from webhooks import receiver

    app = Flask("webhooks", root_path=site.root_path)
    app.config = site.config
    app.extensions = site.extensions
    app.session_interface = NoSessions()
    app.url_map.converters.update(site.url_map.converters)
    app.before_request(observe.start_request)
    app.after_request(observe.finish_request)
    app.teardown_request(observe.forget_request)
    app.teardown_appcontext(extensions.close_db_session)
    headers = dict(HEADERS)
    if site.config["APP_ENV"] == "production":
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[dict[str, str], int]:
        return {"error": exc.description or exc.name}, exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[dict[str, str], int, dict[str, str]]:
        if database_unavailable(exc):
            log.error("database unavailable on %s %s: %s", request.method, PATH, describe(exc))
            return {"error": "database unavailable"}, 503, {"Retry-After": "5"}
        # The type and place only: a traceback or an SQL error carries values.
        log.error("unhandled error on %s %s: %s", request.method, PATH, describe(exc))
        return {"error": "internal error"}, 500, {}

    app.register_blueprint(receiver.bp)
    return app
