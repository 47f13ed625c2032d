"""The gate every /ledger page sits behind: who the staff member of a request
is (`current_staff`), `staff_required` and `protect_blueprint` (deny by
default: a route under /ledger needs a live staff session unless it is marked
`public`), the audit helper, and `init_app`, which wires the gate, the login
rate limit and ProxyFix into the app. Web side; never logs an email.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from cryptography.fernet import MultiFernet
from flask import Blueprint, Flask, abort, current_app, g, redirect, request, session, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from app.extensions import client_address, db_session, init_limiter
from app.staff import (
    HashCost,
    LoginPolicy,
    Staff,
    StaffSession,
    can,
    check_role,
    find_session,
    make_cipher,
    make_hasher,
    needs_totp_enrolment,
    record_audit,
    role_at_least,
)

SESSION_KEY = "staff_token"
# What a staff member who must enrol in two-factor may still reach.
ENROLMENT_ENDPOINTS = frozenset({"auth.two_factor", "auth.logout"})

View = TypeVar("View", bound=Callable[..., Any])


def current_staff() -> Staff | None:
    """The staff member of this request (a live, fully logged-in session), or None."""
    staff: Staff | None = g.get("staff")
    return staff


def current_staff_session() -> StaffSession | None:
    row: StaffSession | None = g.get("staff_session")
    return row


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


def secret_cipher() -> MultiFernet:
    """What encrypts secrets at rest (DATA_ENCRYPTION_KEY, newest key first)."""
    cipher: MultiFernet = current_app.extensions["donations.secret_cipher"]
    return cipher


def _no_store(response: Response) -> Response:
    """Staff pages and the login are never kept by a browser or a proxy."""
    path = request.path
    if path == "/ledger" or path.startswith(("/ledger/", "/login", "/logout")):
        response.headers["Cache-Control"] = "no-store"
    return response


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
        ip_max_delay=timedelta(seconds=float(config["LOGIN_IP_MAX_DELAY_SECONDS"])),
    )
    app.extensions["donations.secret_cipher"] = make_cipher(config["DATA_ENCRYPTION_KEYS"])
    limiter = init_limiter(app)  # the app's one limiter; app.guard adds the donor forms' caps
    for endpoint in ("auth.login", "auth.login_code"):
        app.view_functions[endpoint] = limiter.limit(
            str(config["LOGIN_RATE_LIMIT"]), methods=["POST"]
        )(app.view_functions[endpoint])
    app.before_request(_load_staff)
    app.before_request(_guard_ledger)
    app.after_request(_no_store)
    app.jinja_env.globals.update(current_staff=current_staff, can=can)
