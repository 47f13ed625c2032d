"""GET /donate for a first visit (no cookie, no query string: every new
reader, and the benchmark), answered from the form page the view cached,
without Flask's request handling; every other request goes to the site.

Profiled under gunicorn (bench/README.md, `GET /donate` again), what such a
visit costs beyond the page itself was Flask's contexts and the site's hooks:
nine before-request, five after-request and two teardown hooks, of which for
this visit only five do anything (the request id and latency, the security
headers, the CSRF token and the session cookie that carries it). So this
handler does exactly those, with the site's own pieces: the language as
Flask-Babel's selector picks it (app.i18n.views.environ_locale), the page the
view rendered for it (app.donate.views.plain_page), the token Flask-WTF's
validation reads (app.extensions.sign_csrf_value), the cookie Flask's session
writes (CookieSessions.new_session_cookie) and the headers Flask-Talisman
wrote for the view (Headers.recorded), in the order the site writes them
(tests/integration/test_first_visit.py compares both answers, and fails when
the site gains a hook this handler does not know). Anything it cannot answer
the same way goes to the site: another path, method or query, a cookie, a
CAPTCHA that may be shown, a page or headers not made yet, an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app import extensions
from app.donate.views import fill_page, plain_page
from app.i18n.views import environ_locale, identifier_of
from app.observe.logs import REQUEST_ID, describe, request_id_from
from app.observe.views import latency_of

log = logging.getLogger(__name__)

PATH = "/donate"  # below the language prefix (app.i18n.prefix): /ru/donate too
ENDPOINT = "donate.form"
CONTENT_TYPE = ("Content-Type", "text/html; charset=utf-8")  # Flask's for a str page

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FirstVisit:
    """WSGI, inside the language prefix: a first visit's GET /donate answered
    here, everything else by `site`. Reads `app`'s config and extensions per
    request (a test may change them after the app is made)."""

    def __init__(self, site: WSGIApp, app: Flask) -> None:
        self.site = site
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or "HTTP_COOKIE" in environ
        ):
            return self.site(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = REQUEST_ID.set(request_id)
        try:
            answer = self.answer(environ, request_id)
        except Exception as exc:  # the site answers it, as it answers everything else
            log.warning("first visit left to the site: %s", describe(exc))
            answer = None
        finally:
            REQUEST_ID.reset(token)
        if answer is None:
            return self.site(environ, start_response)
        headers, body = answer
        start_response("200 OK", headers)
        latency_of(ENDPOINT, "GET", 200).observe(time.perf_counter() - started)
        return [body]

    def answer(
        self, environ: dict[str, Any], request_id: str
    ) -> tuple[list[tuple[str, str]], bytes] | None:
        """The headers and body the site would send this first visit, or None
        where only the site can answer it."""
        app = self.app
        if app.extensions.get("donations.turnstile") is not None:
            return None  # the CAPTCHA widget depends on this address's count (app.guard)
        config = app.config
        locale = identifier_of(environ_locale(environ, config["LANGUAGES"]))
        page = plain_page(app, locale)
        secure = environ.get("wsgi.url_scheme") in ("https", "wss")  # request.is_secure
        secure = secure or environ.get("HTTP_X_FORWARDED_PROTO") == "https"
        security = extensions.talisman.recorded(app, app.view_functions.get(ENDPOINT), secure)
        secret_key = config.get("WTF_CSRF_SECRET_KEY", app.secret_key)
        field_name = config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        sessions = app.session_interface
        if (
            page is None
            or security is None
            or secret_key is None
            or field_name is None
            or not isinstance(sessions, extensions.CookieSessions)
        ):
            return None
        value = extensions.new_csrf_value()
        cookie = sessions.new_session_cookie(app, {field_name: value})
        if cookie is None:
            return None
        body = fill_page(page, extensions.sign_csrf_value(secret_key, value)).encode()
        return [
            CONTENT_TYPE,
            ("Content-Length", str(len(body))),
            *security,
            ("X-Request-Id", request_id),
            ("Vary", "Cookie"),
            ("Set-Cookie", cookie),
        ], body
