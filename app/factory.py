"""The application factory: settings, extensions, blueprints, error pages.

Does no work beyond wiring: no migrations, no network, no prompts.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, render_template, request
from flask_babel import get_locale
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app import extensions
from app.db import Database
from app.money import format_money, format_plain, format_short
from app.sandbox import SandboxPayments, sandbox_allowed
from app.settings import ROOT, load_settings
from app.staff import gate as staff_gate
from app.stripe_api import payments_from_settings

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        "app",
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.update(load_settings(overrides=test_config))
    # Flask's defaults exist (SameSite None), so assign rather than setdefault.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = app.config["PUBLIC_BASE_URL"].startswith("https://")
    app.config["BABEL_DEFAULT_LOCALE"] = app.config["LANGUAGES"][0]
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(ROOT / "translations")

    app.extensions["donations.db"] = Database(app.config["DATABASE_URL"])
    app.extensions["donations.payments"] = _choose_payments(app)
    app.teardown_appcontext(extensions.close_db_session)

    extensions.csrf.init_app(app)
    extensions.babel.init_app(app, locale_selector=_select_locale)

    _register_blueprints(app)
    staff_gate.init_app(app)  # after every blueprint: the /ledger gate, login rate limit, ProxyFix

    app.jinja_env.globals.update(
        get_locale=get_locale,
        format_money=format_money,
        format_plain=format_plain,
        format_short=format_short,
    )
    _register_error_pages(app)
    return app


def _register_blueprints(app: Flask) -> None:
    """Every feature's blueprint. Their modules are imported here, not at the
    top: `app` imports the web side (and `webhooks`) only inside create_app."""
    from app import health
    from app.donate import views as donate
    from app.finance import events as finance_events
    from app.finance import views as finance
    from app.sandbox import views as sandbox
    from app.staff import admin as staff_admin
    from app.staff import views as staff_login
    from webhooks import receiver

    app.register_blueprint(donate.bp)
    app.register_blueprint(health.bp)
    if isinstance(app.extensions["donations.payments"], SandboxPayments):
        app.register_blueprint(sandbox.bp)
    app.register_blueprint(receiver.bp)
    extensions.csrf.exempt(receiver.receive_stripe_event)  # Stripe signs; this route only
    app.register_blueprint(staff_login.bp)
    app.register_blueprint(staff_admin.bp)
    app.register_blueprint(finance.bp)
    app.register_blueprint(finance_events.bp)


def _choose_payments(app: Flask) -> Any:
    """Stripe when a key is set; otherwise the offline sandbox outside
    production while `sandbox_enabled`; otherwise None (not configured)."""
    chosen = app.config.get("PAYMENTS") or payments_from_settings(app.config)
    if chosen is None and sandbox_allowed(app.config):
        chosen = SandboxPayments.from_config(
            app.extensions["donations.db"], app.config, extensions.db_session
        )
    return chosen


def _select_locale() -> str | None:
    languages: list[str] = current_app.config["LANGUAGES"]
    return request.accept_languages.best_match(languages) or languages[0]


def _register_error_pages(app: Flask) -> None:
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
    def unexpected(exc: Exception) -> tuple[str, int]:
        # Never a stack trace to a person; the log keeps the type and place only.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_template("errors/error.html", status=500, reason=None), 500
