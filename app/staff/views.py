"""Staff login: password then TOTP code, logout, two-factor enrolment and the
change of one's own password (the `auth` blueprint; the gate is app.staff.gate).

Every refusal at login looks the same; never logs an email, a password or a
code. Each view commits once.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.staff import (
    Staff,
    StaffError,
    StaffSession,
    address_delay,
    authenticate,
    authenticate_code,
    check_current_password,
    confirm_totp_enrolment,
    end_session,
    find_session,
    record_audit,
    set_password,
    start_session,
    start_totp_enrolment,
    totp_uri,
)
from app.staff.forms import CodeForm, LoginForm, PasswordChangeForm
from app.staff.gate import (
    SESSION_KEY,
    client_address,
    current_staff,
    current_staff_session,
    login_policy,
    password_hasher,
    protect_blueprint,
    public,
    secret_cipher,
)

bp = Blueprint("auth", __name__)
protect_blueprint(bp, "viewer")
log = logging.getLogger(__name__)

LANDING = "/ledger/"  # the finance dashboard (its blueprint is not ours)
PENDING_KEY = "staff_pending_token"
NEXT_KEY = "staff_next"
CODE_STEP_TIME = timedelta(minutes=5)  # to type the code after the password
GENERIC_FAILURE = (
    "That did not work. Check your email and password, or wait a few minutes and try again."
)
CODE_FAILURE = "That code did not work. Use the current code from your app, or wait a few minutes."


def _safe_next(value: str | None) -> str:
    """Only our own /ledger pages: never an open redirect."""
    if (
        value
        and (value == "/ledger" or value.startswith("/ledger/"))
        and "\\" not in value
        and not value.startswith("//")
        and value.isascii()
        and value.isprintable()
        and " " not in value
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
        return render_template("staff/login.html", form=form)
    form = LoginForm()
    if not form.validate():
        return render_template("staff/login.html", form=form), 400
    db = db_session()
    _slow_down_a_busy_address()
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
        return render_template("staff/login.html", form=form, failed=GENERIC_FAILURE), 401
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


def _slow_down_a_busy_address() -> None:
    """An address with many failures waits (capped) before every answer, a
    correct password's too: slowed, never locked out (see throttle)."""
    delay = address_delay(db_session(), client_address(), login_policy())
    if delay > 0:
        time.sleep(delay)


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
        return render_template("staff/code.html", form=form)
    if not form.validate():
        return render_template("staff/code.html", form=form), 400
    db = db_session()
    _slow_down_a_busy_address()
    attempt = authenticate_code(
        db,
        staff=pending.staff,
        code=form.code.data or "",
        ip=client_address(),
        policy=login_policy(),
        cipher=secret_cipher(),
    )
    if not attempt.ok:
        db.commit()
        log.info("login code refused (%s)", attempt.reason)
        return render_template("staff/code.html", form=form, failed=CODE_FAILURE), 401
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
        return render_template("staff/two_factor.html", enrolled=True, form=form)
    secret = start_totp_enrolment(staff, secret_cipher())
    db.commit()
    uri = totp_uri(secret, staff.email, current_app.config["ORGANISATION_NAME"])
    page = {"enrolled": False, "form": form, "secret": secret, "uri": uri, "qr": _qr_svg(uri)}
    if request.method == "GET":
        return render_template("staff/two_factor.html", **page)
    if not form.validate():
        return render_template("staff/two_factor.html", **page), 400
    if not confirm_totp_enrolment(
        db, staff, form.code.data or "", secret_cipher(), ip=client_address()
    ):
        db.rollback()
        form.code.errors = ["That code did not match. Check the time on your phone and try again."]
        return render_template("staff/two_factor.html", **page), 400
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
        return render_template("staff/password.html", form=form)
    if not form.validate():
        return render_template("staff/password.html", form=form), 400
    db = db_session()
    hasher = password_hasher()
    checked = check_current_password(
        db,
        staff=staff,
        password=form.current_password.data or "",
        ip=client_address(),
        hasher=hasher,
        policy=login_policy(),
    )
    if not checked.ok:
        db.commit()
        log.info("password change refused (%s)", checked.reason)
        form.current_password.errors = ["That is not your current password."]
        return render_template("staff/password.html", form=form), 400
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
        return render_template("staff/password.html", form=form), 400
    # Every session of the account ended; this browser gets a new one.
    _row, token = start_session(db, staff)
    db.commit()
    session.clear()
    session[SESSION_KEY] = token
    log.info("staff %s changed their password", staff.id)
    flash("Your password was changed. Every other session of your account was signed out.")
    return redirect(url_for("auth.password"), 303)
