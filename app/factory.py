"""The application factory: settings, extensions, blueprints, error pages,
input hygiene (control characters, out-of-range integers and non-form bodies
are a 400 before any view runs) and the security headers.

Does no work beyond wiring: no migrations, no network, no prompts. Never logs
a request's values or an SQL statement's parameters.
"""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from functools import cached_property
from typing import Any
from weakref import ref

from flask import Flask, current_app, render_template, request
from flask_babel import get_locale
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import IntegerConverter

from app import extensions
from app.db import Database, database_unavailable
from app.guard import gate as guard_gate
from app.i18n.catalogs import compile_catalogs
from app.i18n.prefix import LanguagePrefix
from app.i18n.views import select_locale
from app.money import format_money, format_plain, format_short
from app.observe import views as observe
from app.observe.logs import configure_logging, describe
from app.sandbox import SandboxPayments, sandbox_allowed
from app.settings import ROOT, load_settings
from app.staff import gate as staff_gate
from app.stripe_api import payments_from_settings

log = logging.getLogger(__name__)

BIGINT_MAX = 2**63 - 1  # the largest id or number any of our columns holds
# Query strings, paths and names hold no control character; form values may
# hold tabs and line breaks (a comment), nothing else below U+0020 nor DEL.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FORM_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FORM_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data")
# No inline script or style anywhere (tests/unit/test_settings_and_layout.py
# greps the templates); forms post to us, and POST /donate's 303 goes on to
# Stripe Checkout (and a card update's to Stripe's billing portal), which
# browsers check against form-action too.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": ["'self'", "data:"],
    "form-action": ["'self'", "https://checkout.stripe.com", "https://billing.stripe.com"],
    "base-uri": "'none'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}
# Requests no rate limit may ever apply to, so Flask-Limiter does not even look
# (its look-up was a quarter of a GET /donate, profiled): the form page itself.
# POST /donate and the login stay limited. Stripe's signed deliveries never
# reach this app's hooks (webhooks.wsgi: a 429 would only make Stripe retry).
NEVER_LIMITED = frozenset({("GET", "donate.form")})


class BadInput(BadRequest):
    """A request no view should see; `fields` names where the problem was."""

    description = "That request holds characters or numbers this site cannot accept."

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = fields


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` in every route: ASCII digits only, and no larger than a
    BIGINT, so an absurd id is a 404 and never reaches the database."""

    regex = r"[0-9]+"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(map, *args, **kwargs)


class App(Flask):
    """Flask, asking once per function whether a hook or view is a coroutine
    (Flask asks on every call: eighteen `inspect` look-ups a request,
    profiled). Plain functions are remembered by id with a weak reference, so
    one made for a single request goes with it (and a new function given its
    id is asked afresh); a coroutine function is converted as Flask does."""

    def ensure_sync(self, func: Any) -> Any:
        known = self._plain.get(id(func))
        if known is not None and known() is func:
            return func
        made = super().ensure_sync(func)
        if made is func:
            key, plain = id(func), self._plain
            with suppress(TypeError):  # a callable that takes no weak reference: asked each time
                plain[key] = ref(func, lambda _gone: plain.pop(key, None))
        return made

    @cached_property
    def _plain(self) -> dict[int, ref[Any]]:
        return {}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = App(
        "app",
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.update(load_settings(overrides=test_config))
    if app.config["APP_ENV"] == "development":
        compile_catalogs()  # a .po edited since `make`: its .mo again (a few stat calls otherwise)
    app.url_map.converters["int"] = BoundedIntConverter
    # Flask's defaults exist (SameSite None), so assign rather than setdefault.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = app.config["PUBLIC_BASE_URL"].startswith("https://")
    app.config["BABEL_DEFAULT_LOCALE"] = app.config["LANGUAGES"][0]
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(ROOT / "translations")

    app.extensions["donations.db"] = Database(app.config["DATABASE_URL"])
    app.extensions["donations.payments"] = _choose_payments(app)
    app.teardown_appcontext(extensions.close_db_session)
    if app.config.get("LOG_FORMAT"):
        configure_logging(str(app.config["LOG_FORMAT"]), str(app.config.get("LOG_LEVEL") or "INFO"))

    observe.init_app(app)  # first: the request id and the latency clock wrap everything
    app.before_request(refuse_hostile_input)  # before CSRF: its error page reads the form
    _init_csrf(app)
    _init_security_headers(app)
    extensions.babel.init_app(app, locale_selector=select_locale)

    _register_blueprints(app)
    # A first visit's GET /donate without Flask's hooks (the same answer, measured cheaper).
    from app.donate.first_visit import FirstVisit

    app.wsgi_app = FirstVisit(app.wsgi_app, app)  # type: ignore[method-assign]
    # /ru/donate is /donate in Russian; inside ProxyFix (which staff_gate adds).
    app.wsgi_app = LanguagePrefix(app.wsgi_app, app.config["LANGUAGES"])  # type: ignore[method-assign]
    staff_gate.init_app(app)  # after every blueprint: the /ledger gate, login rate limit, ProxyFix
    guard_gate.init_app(app)  # the donor forms' caps (same limiter), honeypot, CAPTCHA, 429 page
    _skip_limiter_where_never_limited(app)

    app.jinja_env.globals.update(
        get_locale=get_locale,
        format_money=format_money,
        format_plain=format_plain,
        format_short=format_short,
    )
    _register_error_pages(app)
    # Outermost: POST /webhooks/stripe is answered by its own small app (same
    # settings, extensions and pools) without the site's hooks (webhooks.wsgi).
    from webhooks.wsgi import WebhookDispatch, webhook_app

    app.wsgi_app = WebhookDispatch(app.wsgi_app, webhook_app(app))  # type: ignore[method-assign]
    return app


def _init_security_headers(app: Flask) -> None:
    """Flask-Talisman: CSP, frame-ancestors, nosniff, Referrer-Policy; HSTS in
    production only. It never redirects to https (the proxy in front does, and
    dev, tests and the webhook route run on plain http); the session cookie
    stays Secure exactly when PUBLIC_BASE_URL is https."""
    extensions.talisman.init_app(
        app,
        force_https=False,
        strict_transport_security=app.config["APP_ENV"] == "production",
        strict_transport_security_include_subdomains=False,
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
    )


def _register_blueprints(app: Flask) -> None:
    """Every feature's blueprint. Their modules are imported here, not at the
    top: `app` imports the web side (and `webhooks`) only inside create_app."""
    from app import health
    from app.appeals import admin as appeals_admin
    from app.appeals import views as appeals
    from app.brand import views as brand
    from app.donate import views as donate
    from app.finance import events as finance_events
    from app.finance import views as finance
    from app.i18n import views as i18n
    from app.manage import views as manage
    from app.receipts import views as receipts
    from app.reconcile import views as reconcile
    from app.sandbox import views as sandbox
    from app.staff import admin as staff_admin
    from app.staff import views as staff_login
    from webhooks.hooks import webhooks

    app.extensions["donations.webhooks"] = webhooks()
    app.register_blueprint(donate.bp)
    app.register_blueprint(i18n.bp)
    app.register_blueprint(brand.bp)
    app.register_blueprint(health.bp)
    if isinstance(app.extensions["donations.payments"], SandboxPayments):
        app.register_blueprint(sandbox.bp)
    app.register_blueprint(staff_login.bp)
    app.register_blueprint(staff_admin.bp)
    app.register_blueprint(finance.bp)
    app.register_blueprint(finance_events.bp)
    app.register_blueprint(reconcile.bp)
    app.register_blueprint(receipts.bp)
    app.register_blueprint(appeals.bp)
    app.register_blueprint(appeals_admin.bp)
    app.register_blueprint(manage.bp)


def _choose_payments(app: Flask) -> Any:
    """Stripe when a key is set; otherwise the offline sandbox outside
    production while `sandbox_enabled`; otherwise None (not configured)."""
    chosen = app.config.get("PAYMENTS") or payments_from_settings(app.config)
    if chosen is None and sandbox_allowed(app.config):
        chosen = SandboxPayments.from_config(
            app.extensions["donations.db"], app.config, extensions.db_session
        )
    return chosen


def never_limited() -> bool:
    here = request._get_current_object()  # type: ignore[attr-defined]  # one context look-up, not two
    return (here.method, here.endpoint) in NEVER_LIMITED


def _skip_limiter_where_never_limited(app: Flask) -> None:
    """Flask-Limiter's own request filter is asked only after it has looked
    up the view, its limits and its exemptions (profiled: still a sixteenth
    of a GET /donate with nothing to limit), so its before-request hook is
    wrapped to skip it outright for NEVER_LIMITED, and so are its
    after-request hook (conditional deductions and rate-limit headers: none
    without a limit) and its teardown (resetting the request's limiter state,
    which such a request never made); the filter stays for its other callers
    (a limit decorating a view)."""
    limiter = app.extensions["donations.limiter"]
    limiter.request_filter(never_limited)
    hooks = app.before_request_funcs[None]
    check = hooks[hooks.index(limiter._check_request_limit)]  # its hook, or a loud ValueError
    # The before-request check counts only application, default and meta
    # limits; with none (this site's limits all decorate their views, which
    # check them), it finds nothing to count on any request (profiled: a
    # thirtieth of a POST /donate), so it is not asked.
    manager = limiter.limit_manager
    counts = bool(manager.application_limits or manager.default_limits or limiter._meta_limits)

    def check_request_limit() -> None:
        if counts and not never_limited():
            check()

    hooks[hooks.index(check)] = check_request_limit
    after = app.after_request_funcs[None]
    (inject,) = [h for h in after if getattr(h, "args", None) == (limiter,)]  # its partial

    def inject_headers(response: Any) -> Any:
        return response if never_limited() else inject(response)

    after[after.index(inject)] = inject_headers
    teardown = app.teardown_request_funcs[None]
    (release,) = [h for h in teardown if getattr(h, "__self__", None) is limiter]

    def release_context(exc: BaseException | None = None) -> None:
        if not never_limited():
            release(exc)

    teardown[teardown.index(release)] = release_context


def _init_csrf(app: Flask) -> None:
    """Flask-WTF's CSRFProtect. Its before-request hook looks up the view and
    its exemptions before it asks the method (profiled: a fiftieth of a GET
    /donate), so it is wrapped, in its place, to be called only for the
    methods it checks (`WTF_CSRF_METHODS`: POST, PUT, PATCH, DELETE); for
    those it runs as it is."""
    hooks = app.before_request_funcs.setdefault(None, [])
    before = len(hooks)
    extensions.csrf.init_app(app)
    (protect,) = hooks[before:]  # its one hook, or a loud ValueError

    def csrf_protect() -> None:
        if request.method in current_app.config["WTF_CSRF_METHODS"]:
            protect()

    hooks[before] = csrf_protect


def _bad_integer(value: str) -> bool:
    """A number in another script (int() reads "٣" and "²" fails), or one no
    column can hold."""
    digits = value.strip().lstrip("+-").replace("_", "")
    if not digits.isdigit():
        return False
    return not digits.isascii() or int(digits) > BIGINT_MAX


def refuse_hostile_input() -> None:
    """Before every view: a 400 for control characters in the path, the query
    string or a form, an integer out of range or not in ASCII in the query
    string, and a body that is not a form (JSON where a form belongs). The
    webhook route, which reads its own bytes, never passes here (webhooks.wsgi)."""
    here = request._get_current_object()  # type: ignore[attr-defined]  # one context look-up
    bad = ["path"] if CONTROL.search(here.path) else []
    if here.query_string:  # else no argument to parse (the usual visit)
        for key, value in here.args.items(multi=True):
            if CONTROL.search(key) or CONTROL.search(value) or _bad_integer(value):
                bad.append(key)
    if here.method in ("POST", "PUT", "PATCH", "DELETE"):
        if here.mimetype not in FORM_TYPES:
            raise BadInput([*bad, "body"])
        for key, value in here.form.items(multi=True):
            if CONTROL.search(key) or FORM_CONTROL.search(value):
                bad.append(key)
    if bad:
        raise BadInput(bad)


def _cleaned_form() -> MultiDict[str, str]:
    if request.mimetype not in FORM_TYPES:
        return MultiDict()
    return MultiDict(
        [
            (CONTROL.sub("", key), FORM_CONTROL.sub("", value))
            for key, value in request.form.items(multi=True)
        ]
    )


def _register_error_pages(app: Flask) -> None:
    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput) -> tuple[str, int]:
        from app.donate.views import render_after_bad_input

        log.info("bad input refused on %s %s", request.method, request.endpoint)
        page = render_after_bad_input(exc.fields, _cleaned_form())
        if page is not None:
            return page
        return render_template("errors/error.html", status=400, reason=exc.description), 400

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[str, int]:
        from app.donate.views import render_after_csrf_failure

        page = render_after_csrf_failure()
        if page is not None:
            return page
        return render_template("errors/error.html", status=400, reason=exc.description), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        status = exc.code or 500
        return render_template("errors/error.html", status=status, reason=exc.description), status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if database_unavailable(exc):
            # Not a bug of ours: say so with a 503, which Stripe (and a person)
            # retries; the page itself must not need the database.
            log.error(
                "database unavailable on %s %s: %s",
                request.method,
                request.endpoint,
                describe(exc),
            )
            headers = {"Retry-After": "5"}
            if request.path.startswith("/webhooks/"):
                return {"error": "database unavailable"}, 503, headers
            try:
                return render_template("errors/error.html", status=503, reason=None), 503, headers
            except Exception:
                return "Service unavailable; please try again in a moment.\n", 503, headers
        # Never a stack trace to a person; the log keeps the type and place
        # only (a traceback or an SQL error's text would carry its parameters).
        log.error("unhandled error on %s %s: %s", request.method, request.endpoint, describe(exc))
        return render_template("errors/error.html", status=500, reason=None), 500
