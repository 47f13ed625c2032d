"""Staff login: password then TOTP code, logout, two-factor enrolment and the
change of one's own password; and the gate every /ledger page sits behind
(`protect_blueprint`, `staff_required`, `current_staff`).

Deny by default: a route under /ledger needs a live staff session unless it is
marked public. Every refusal at login looks the same; never logs an email, a
password or a code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import segno
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from app.extensions import db_session
from app.staff import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    HashCost,
    LoginPolicy,
    Staff,
    StaffError,
    StaffSession,
    authenticate,
    authenticate_code,
    can,
    check_role,
    confirm_totp_enrolment,
    end_session,
    find_session,
    make_hasher,
    needs_totp_enrolment,
    record_audit,
    role_at_least,
    set_password,
    start_session,
    start_totp_enrolment,
    totp_uri,
    verify_password,
)

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

LANDING = "/ledger/"  # the finance dashboard (its blueprint is not ours)
SESSION_KEY = "staff_token"
PENDING_KEY = "staff_pending_token"
NEXT_KEY = "staff_next"
CODE_STEP_TIME = timedelta(minutes=5)  # to type the code after the password
# What a staff member who must enrol in two-factor may still reach.
ENROLMENT_ENDPOINTS = frozenset({"auth.two_factor", "auth.logout"})
GENERIC_FAILURE = (
    "That did not work. Check your email and password, or wait a few minutes and try again."
)
CODE_FAILURE = "That code did not work. Use the current code from your app, or wait a few minutes."

View = TypeVar("View", bound=Callable[..., Any])


# -- the gate ------------------------------------------------------------------


def current_staff() -> Staff | None:
    """The staff member of this request (a live, fully logged-in session), or None."""
    staff: Staff | None = g.get("staff")
    return staff


def current_staff_session() -> StaffSession | None:
    row: StaffSession | None = g.get("staff_session")
    return row


def client_address() -> str:
    """The client's address (behind trusted proxies: see TRUSTED_PROXY_HOPS)."""
    return request.remote_addr or "unknown"


def public(view: View) -> View:
    """Mark a view on a protected blueprint as open to anyone."""
    view.public = True  # type: ignore[attr-defined]
    return view


def staff_required(min_role: str = "viewer") -> Callable[[View], View]:
    """Only staff of at least `min_role` (viewer < finance < admin). Sets
    `view.min_role`, which the deny-by-default check and the tests read."""
    check_role(min_role)

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            denial = _enforce(min_role)
            if denial is not None:
                return denial
            return view(*args, **kwargs)

        guarded.min_role = min_role  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def protect_blueprint(blueprint: Blueprint, min_role: str = "viewer") -> None:
    """Every route of `blueprint` needs a staff session of at least `min_role`
    (or its own `staff_required` role), unless marked `public`."""
    check_role(min_role)
    blueprint.staff_min_role = min_role  # type: ignore[attr-defined]

    @blueprint.before_request
    def deny_by_default() -> Response | None:
        role = required_role(current_app, request.endpoint or "", request.path)
        return None if role is None else _enforce(role)


def required_role(app: Flask, endpoint: str, path: str = "") -> str | None:
    """The least role a route needs: None for a public one. A route under
    /ledger that nobody protected needs admin (fail closed)."""
    view = app.view_functions.get(endpoint)
    if view is None:
        return None
    if getattr(view, "public", False):
        return None
    role: str | None = getattr(view, "min_role", None)
    if role:
        return role
    name = endpoint.rpartition(".")[0]
    while name:
        blueprint = app.blueprints.get(name)
        blueprint_role: str | None = getattr(blueprint, "staff_min_role", None)
        if blueprint_role:
            return blueprint_role
        name = name.rpartition(".")[0]
    if path == "/ledger" or path.startswith("/ledger/"):
        return "admin"
    return None


def _protected_by_blueprint(endpoint: str) -> bool:
    name = endpoint.rpartition(".")[0]
    while name:
        if getattr(current_app.blueprints.get(name), "staff_min_role", None):
            return True
        name = name.rpartition(".")[0]
    return False


def _to_login() -> Response:
    if request.method in ("GET", "HEAD"):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return redirect(url_for("auth.login"), 303)


def _enforce(min_role: str) -> Response | None:
    staff = current_staff()
    if staff is None:
        return _to_login()
    required_for_all = bool(current_app.config.get("STAFF_REQUIRE_2FA"))
    if (
        needs_totp_enrolment(staff, required_for_everyone=required_for_all)
        and request.endpoint not in ENROLMENT_ENDPOINTS
    ):
        return redirect(url_for("auth.two_factor"))
    if not role_at_least(staff.role, min_role):
        abort(403)
    return None


def _load_staff() -> None:
    """Before every request: the staff session named by the cookie, if live."""
    token = session.get(SESSION_KEY)
    if not token:
        return
    db = db_session()
    row = find_session(
        db,
        token,
        idle=timedelta(minutes=int(current_app.config["STAFF_SESSION_IDLE_MINUTES"])),
        absolute=timedelta(hours=int(current_app.config["STAFF_SESSION_ABSOLUTE_HOURS"])),
    )
    db.commit()  # a touch or an expiry; nothing else has happened in this request yet
    if row is None:
        session.pop(SESSION_KEY, None)
        return
    g.staff = row.staff
    g.staff_session = row


def _guard_ledger() -> Response | None:
    """Routes under /ledger on a blueprint nobody protected still need a login."""
    endpoint = request.endpoint
    if endpoint is None or _protected_by_blueprint(endpoint):
        return None
    role = required_role(current_app, endpoint, request.path)
    return None if role is None else _enforce(role)


def audit(action: str, detail: dict[str, Any] | None = None) -> None:
    """Record what the current staff member did (the view commits)."""
    record_audit(
        db_session(), actor=current_staff(), action=action, detail=detail, ip=client_address()
    )


def password_hasher() -> Any:
    return current_app.extensions["donations.password_hasher"]


def login_policy() -> LoginPolicy:
    policy: LoginPolicy = current_app.extensions["donations.login_policy"]
    return policy


def init_app(app: Flask) -> None:
    """Wire the gate into an app whose blueprints are registered already."""
    config = app.config
    hops = int(config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    app.extensions["donations.password_hasher"] = make_hasher(
        HashCost(
            time_cost=int(config["PASSWORD_HASH_TIME_COST"]),
            memory_kib=int(config["PASSWORD_HASH_MEMORY_KIB"]),
            parallelism=int(config["PASSWORD_HASH_PARALLELISM"]),
        )
    )
    app.extensions["donations.login_policy"] = LoginPolicy(
        free_failures=int(config["LOGIN_FREE_FAILURES"]),
        max_failures=int(config["LOGIN_MAX_FAILURES"]),
        ip_free_failures=int(config["LOGIN_IP_FREE_FAILURES"]),
        ip_max_failures=int(config["LOGIN_IP_MAX_FAILURES"]),
        max_delay=timedelta(seconds=int(config["LOGIN_MAX_DELAY_SECONDS"])),
        lockout=timedelta(minutes=int(config["LOGIN_LOCKOUT_MINUTES"])),
    )
    # One limiter per app: Redis (shared by every instance) when REDIS_URL is
    # set, memory otherwise; it falls back to memory if Redis goes away.
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=config.get("REDIS_URL") or "memory://",
        key_prefix=str(config["RATE_LIMIT_KEY_PREFIX"]),
        in_memory_fallback_enabled=bool(config.get("REDIS_URL")),
    )
    app.extensions["donations.limiter"] = limiter
    for endpoint in ("auth.login", "auth.login_code"):
        app.view_functions[endpoint] = limiter.limit(
            str(config["LOGIN_RATE_LIMIT"]), methods=["POST"]
        )(app.view_functions[endpoint])
    app.before_request(_load_staff)
    app.before_request(_guard_ledger)
    app.jinja_env.globals.update(current_staff=current_staff, can=can)


# -- forms ---------------------------------------------------------------------


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter your email address.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    next = HiddenField()


class CodeForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app",
        validators=[DataRequired("Enter the six-digit code."), Length(max=10)],
    )


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired("Enter your current password.")]
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired("Choose a new password."),
            Length(
                min=PASSWORD_MIN_LENGTH,
                max=PASSWORD_MAX_LENGTH,
                message=f"Use at least {PASSWORD_MIN_LENGTH} characters.",
            ),
        ],
    )
    confirm = PasswordField(
        "New password again",
        validators=[EqualTo("new_password", message="The two new passwords differ.")],
    )


def _safe_next(value: str | None) -> str:
    """Only our own /ledger pages: never an open redirect."""
    if (
        value
        and (value == "/ledger" or value.startswith("/ledger/"))
        and "\\" not in value
        and not value.startswith("//")
    ):
        return value
    return LANDING


def _start_full_session(staff: Staff, *, two_factor: bool) -> None:
    db = db_session()
    _row, token = start_session(db, staff)
    record_audit(
        db, actor=staff, action="login", detail={"two_factor": two_factor}, ip=client_address()
    )
    db.commit()
    session[SESSION_KEY] = token
    log.info("staff %s logged in", staff.id)


def _end_current_sessions() -> None:
    """Whatever this browser was logged in as ends before a new login starts."""
    db = db_session()
    row = current_staff_session()
    if row is not None:
        end_session(db, row)
    pending = _pending_session()
    if pending is not None:
        end_session(db, pending)


# -- login, code, logout -------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(_safe_next(request.args.get("next")))
        form = LoginForm(next=request.args.get("next", ""))
        return render_template("auth/login.html", form=form)
    form = LoginForm()
    if not form.validate():
        return render_template("auth/login.html", form=form), 400
    db = db_session()
    attempt = authenticate(
        db,
        email=form.email.data or "",
        password=form.password.data or "",
        ip=client_address(),
        hasher=password_hasher(),
        policy=login_policy(),
    )
    if not attempt.ok or attempt.staff is None:
        db.commit()
        log.info("login refused (%s)", attempt.reason)
        return render_template("auth/login.html", form=form, failed=GENERIC_FAILURE), 401
    staff = attempt.staff
    next_url = _safe_next(form.next.data)
    _end_current_sessions()
    session.clear()  # a new session at login: nothing from before carries over
    if staff.has_totp:
        _row, token = start_session(db, staff, stage="totp")
        db.commit()
        session[PENDING_KEY] = token
        session[NEXT_KEY] = next_url
        return redirect(url_for("auth.login_code"), 303)
    _start_full_session(staff, two_factor=False)
    return redirect(next_url, 303)


def _pending_session() -> StaffSession | None:
    token = session.get(PENDING_KEY)
    if not token:
        return None
    db = db_session()
    row = find_session(db, token, idle=CODE_STEP_TIME, absolute=CODE_STEP_TIME, stage="totp")
    db.commit()
    return row


@bp.route("/login/code", methods=["GET", "POST"])
@public
def login_code() -> Any:
    pending = _pending_session()
    if pending is None:
        session.pop(PENDING_KEY, None)
        return redirect(url_for("auth.login"), 303 if request.method == "POST" else 302)
    form = CodeForm()
    if request.method == "GET":
        return render_template("auth/code.html", form=form)
    if not form.validate():
        return render_template("auth/code.html", form=form), 400
    db = db_session()
    attempt = authenticate_code(
        db,
        staff=pending.staff,
        code=form.code.data or "",
        ip=client_address(),
        policy=login_policy(),
    )
    if not attempt.ok:
        db.commit()
        log.info("login code refused (%s)", attempt.reason)
        return render_template("auth/code.html", form=form, failed=CODE_FAILURE), 401
    staff = pending.staff
    end_session(db, pending)
    next_url = _safe_next(session.get(NEXT_KEY))
    session.clear()
    _start_full_session(staff, two_factor=True)
    return redirect(next_url, 303)


@bp.route("/logout", methods=["POST"])
@public
def logout() -> Response:
    db = db_session()
    staff = current_staff()
    _end_current_sessions()
    if staff is not None:
        record_audit(db, actor=staff, action="logout", detail={}, ip=client_address())
        log.info("staff %s logged out", staff.id)
    db.commit()
    session.clear()
    return redirect(url_for("auth.login"), 303)


# -- one's own account ---------------------------------------------------------


def _qr_svg(uri: str) -> Markup:
    # segno renders locally: the secret never leaves the server for a QR service.
    svg: str = segno.make(uri, error="m").svg_inline(scale=4, border=2)
    return Markup(svg)  # noqa: S704 (our own generated SVG, no user input in markup)


@bp.route("/ledger/account/two-factor", methods=["GET", "POST"])
def two_factor() -> Any:
    staff = current_staff()
    assert staff is not None  # the gate ran
    db = db_session()
    form = CodeForm()
    if staff.has_totp:
        return render_template("auth/two_factor.html", enrolled=True, form=form)
    secret = start_totp_enrolment(staff)
    db.commit()
    uri = totp_uri(secret, staff.email, current_app.config["ORGANISATION_NAME"])
    page = {"enrolled": False, "form": form, "secret": secret, "uri": uri, "qr": _qr_svg(uri)}
    if request.method == "GET":
        return render_template("auth/two_factor.html", **page)
    if not form.validate():
        return render_template("auth/two_factor.html", **page), 400
    if not confirm_totp_enrolment(db, staff, form.code.data or "", ip=client_address()):
        db.rollback()
        form.code.errors = ["That code did not match. Check the time on your phone and try again."]
        return render_template("auth/two_factor.html", **page), 400
    db.commit()
    log.info("staff %s enrolled in two-factor", staff.id)
    flash("Two-factor authentication is on. You will be asked for a code at every login.")
    return redirect(LANDING, 303)


@bp.route("/ledger/account/password", methods=["GET", "POST"])
def password() -> Any:
    staff = current_staff()
    assert staff is not None  # the gate ran
    form = PasswordChangeForm()
    if request.method == "GET":
        return render_template("auth/password.html", form=form)
    if not form.validate():
        return render_template("auth/password.html", form=form), 400
    db = db_session()
    hasher = password_hasher()
    if not verify_password(hasher, staff, form.current_password.data or ""):
        audit("password_change_failed", {"staff_id": staff.id})
        db.commit()
        form.current_password.errors = ["That is not your current password."]
        return render_template("auth/password.html", form=form), 400
    try:
        set_password(
            db,
            staff,
            form.new_password.data or "",
            hasher=hasher,
            actor=staff,
            action="password_changed",
            ip=client_address(),
        )
    except StaffError as exc:
        db.rollback()
        form.new_password.errors = [str(exc).capitalize() + "."]
        return render_template("auth/password.html", form=form), 400
    # Every session of the account ended; this browser gets a new one.
    _row, token = start_session(db, staff)
    db.commit()
    session.clear()
    session[SESSION_KEY] = token
    log.info("staff %s changed their password", staff.id)
    flash("Your password was changed. Every other session of your account was signed out.")
    return redirect(url_for("auth.password"), 303)


protect_blueprint(bp, "viewer")
