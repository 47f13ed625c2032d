"""Staff login and the gate in front of /ledger: passwords, TOTP, sessions,
throttling and lockout, CSRF, roles on every route, the admin pages and the
audit log. Real databases (SQLite and PostgreSQL); the clock is moved with
app.clock.frozen_at; CSRF is on, tokens come from the rendered pages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.clock import frozen_at
from app.staff import (
    ROLE_RANK,
    ROLES,
    AuditEntry,
    Staff,
    StaffSession,
    create_staff,
    throttle_state,
)
from app.staff.gate import required_role
from tests.conftest import REDIS_URL

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
GENERIC = "That did not work. Check your email and password"


@pytest.fixture(autouse=True)
def clock() -> Iterator[None]:
    with frozen_at(T0):
        yield


def make_staff(
    app: Flask, db: Session, email: str, role: str = "viewer", *, totp: bool = False
) -> Staff:
    staff = create_staff(
        db,
        email=email,
        role=role,
        password=PASSWORD,
        hasher=app.extensions["donations.password_hasher"],
    )
    if totp:
        staff.totp_secret = pyotp.random_base32()
        staff.totp_enrolled_at = T0
    db.commit()
    return staff


def csrf_token(client: FlaskClient) -> str:
    response = client.get("/login")
    if response.status_code != 200:  # logged in already: any staff form will do
        response = client.get("/ledger/account/password")
    match = CSRF_FIELD.search(response.get_data(as_text=True))
    assert match, response.status_code
    return match.group(1)


def post_login(
    client: FlaskClient,
    email: str,
    password: str = PASSWORD,
    *,
    ip: str = "192.0.2.10",
    next_url: str = "",
) -> Any:
    return client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "next": next_url,
            "csrf_token": csrf_token(client),
        },
        environ_base={"REMOTE_ADDR": ip},
    )


def post_code(client: FlaskClient, code: str, *, ip: str = "192.0.2.10") -> Any:
    page = client.get("/login/code", environ_base={"REMOTE_ADDR": ip})
    token = CSRF_FIELD.search(page.get_data(as_text=True))
    assert token, page.status_code
    return client.post(
        "/login/code",
        data={"code": code, "csrf_token": token.group(1)},
        environ_base={"REMOTE_ADDR": ip},
    )


def logged_in(app: Flask, email: str, *, ip: str = "192.0.2.10") -> FlaskClient:
    client = app.test_client()
    response = post_login(client, email, ip=ip)
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def fresh(db: Session) -> None:
    """See what the app committed: end our snapshot (SQLite WAL keeps one per
    transaction) and forget loaded rows."""
    db.rollback()
    db.expire_all()


def audit(db: Session, action: str) -> list[AuditEntry]:
    fresh(db)
    return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


# -- passwords -----------------------------------------------------------------


def test_a_staff_member_logs_in_and_lands_on_the_ledger(app: Flask, db: Session) -> None:
    staff = make_staff(app, db, "ana@newsroom.test", "admin")
    client = app.test_client()
    response = post_login(client, "  Ana@Newsroom.test ")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ledger/"
    assert client.get("/ledger/staff").status_code == 200
    rows = list(db.scalars(select(StaffSession).where(StaffSession.staff_id == staff.id)))
    assert [(row.stage, row.revoked_at) for row in rows] == [("full", None)]
    [entry] = audit(db, "login")
    assert entry.actor_id == staff.id and entry.ip == "192.0.2.10"
    assert entry.details == {"two_factor": False}


def test_the_session_cookie_is_httponly_and_samesite_lax(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test")
    client = app.test_client()
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": "ana@newsroom.test", "password": PASSWORD, "csrf_token": csrf_token(client)},
    )
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header  # PUBLIC_BASE_URL is http in the suite


@pytest.mark.settings(PUBLIC_BASE_URL="https://donate.example.org")
def test_the_session_cookie_is_secure_when_the_site_is_https(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test")
    client = app.test_client()
    page = client.get("/login", base_url="https://donate.example.org")
    token = CSRF_FIELD.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/login",
        data={"email": "ana@newsroom.test", "password": PASSWORD, "csrf_token": token},
        base_url="https://donate.example.org",
        headers={"Referer": "https://donate.example.org/login"},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(app: Flask, db: Session) -> None:
    staff = make_staff(app, db, "ana@newsroom.test")
    wrong = post_login(app.test_client(), "ana@newsroom.test", "not the password at all")
    unknown = post_login(app.test_client(), "nobody@newsroom.test", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401

    def message(response: Any) -> str:
        html = response.get_data(as_text=True)
        return re.search(r'role="alert">([^<]*)<', html).group(1)  # type: ignore[union-attr]

    assert message(wrong) == message(unknown)
    assert GENERIC in message(wrong)
    assert "not the password at all" not in wrong.get_data(as_text=True)
    failures = audit(db, "login_failed")
    assert sorted((e.details.get("staff_id", 0), e.details["reason"]) for e in failures) == [
        (0, "unknown_email"),
        (staff.id, "bad_password"),
    ]
    assert all(e.ip == "192.0.2.10" and e.actor_id is None for e in failures)
    everything = " ".join(e.detail for e in db.scalars(select(AuditEntry)))
    assert "not the password" not in everything


def test_a_disabled_account_cannot_log_in(app: Flask, db: Session) -> None:
    staff = make_staff(app, db, "ana@newsroom.test")
    staff.disabled_at = T0
    db.commit()
    response = post_login(app.test_client(), "ana@newsroom.test")
    assert response.status_code == 401
    assert GENERIC in response.get_data(as_text=True)
    assert [e.details["reason"] for e in audit(db, "login_failed")] == ["disabled"]


def test_login_only_redirects_to_pages_under_ledger(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    inside = post_login(app.test_client(), "ana@newsroom.test", next_url="/ledger/audit")
    outside = post_login(app.test_client(), "ana@newsroom.test", next_url="//evil.example/x")
    assert inside.headers["Location"] == "/ledger/audit"
    assert outside.headers["Location"] == "/ledger/"


# -- two-factor ----------------------------------------------------------------


def test_enrolment_then_login_asks_for_a_code_and_a_code_works_only_once(
    app: Flask, db: Session
) -> None:
    staff = make_staff(app, db, "ana@newsroom.test", "admin")
    client = logged_in(app, "ana@newsroom.test")
    page = client.get("/ledger/account/two-factor")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<svg" in html and "otpauth://totp/" in html
    fresh(db)
    stored = db.get(Staff, staff.id).totp_pending_secret  # type: ignore[union-attr]
    secret = re.search(r'class="secret"[^>]*>([A-Z2-7]{32})<', html).group(1)  # type: ignore[union-attr]
    assert stored and stored.startswith("fernet:") and secret not in stored
    totp = pyotp.TOTP(secret)
    token = CSRF_FIELD.search(html).group(1)  # type: ignore[union-attr]
    wrong = client.post("/ledger/account/two-factor", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 400
    confirmed = client.post(
        "/ledger/account/two-factor", data={"code": totp.at(T0), "csrf_token": token}
    )
    assert confirmed.status_code == 303
    fresh(db)
    stored = db.scalar(text("SELECT totp_secret FROM staff_members WHERE id = :i"), {"i": staff.id})
    assert stored.startswith("fernet:") and secret not in stored
    assert len(audit(db, "totp_enrolled")) == 1

    with frozen_at(T0 + timedelta(minutes=2)):
        browser = app.test_client()
        response = post_login(browser, "ana@newsroom.test")
        assert response.headers["Location"] == "/login/code"
        # The password alone opens nothing.
        assert browser.get("/ledger/staff").status_code == 302
        code = totp.at(T0 + timedelta(minutes=2))
        assert post_code(browser, code).status_code == 303
        assert browser.get("/ledger/staff").status_code == 200

        # The same code again, in another browser: refused.
        other = app.test_client()
        post_login(other, "ana@newsroom.test")
        replay = post_code(other, code)
        assert replay.status_code == 401
        assert other.get("/ledger/staff").status_code == 302
    assert [e.details for e in audit(db, "login") if e.details["two_factor"]] == [
        {"two_factor": True}
    ]
    assert [e.details["reason"] for e in audit(db, "login_failed")] == ["bad_code"]
    with frozen_at(T0 + timedelta(minutes=2, seconds=30)):
        assert post_code(other, totp.at(T0 + timedelta(minutes=2, seconds=30))).status_code == 303


def test_the_code_step_expires(app: Flask, db: Session) -> None:
    staff = make_staff(app, db, "ana@newsroom.test", totp=True)
    client = app.test_client()
    post_login(client, "ana@newsroom.test")
    later = T0 + timedelta(minutes=6)
    with frozen_at(later):
        response = client.get("/login/code")
        assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert staff.totp_secret


@pytest.mark.settings(STAFF_REQUIRE_2FA=True)
def test_with_2fa_required_a_member_without_it_can_only_enrol(app: Flask, db: Session) -> None:
    make_staff(app, db, "vic@newsroom.test", "admin")
    client = logged_in(app, "vic@newsroom.test")
    for path in ("/ledger/staff", "/ledger/audit", "/ledger/account/password"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/ledger/account/two-factor"
    assert client.get("/ledger/account/two-factor").status_code == 200


def test_an_admin_can_require_2fa_for_one_account(app: Flask, db: Session) -> None:
    make_staff(app, db, "root@newsroom.test", "admin")
    vic = make_staff(app, db, "vic@newsroom.test", "viewer")
    admin = logged_in(app, "root@newsroom.test")
    response = admin.post(
        f"/ledger/staff/{vic.id}/two-factor",
        data={"required": "y", "csrf_token": csrf_token(admin)},
    )
    assert response.status_code == 303
    viewer = logged_in(app, "vic@newsroom.test")
    assert (
        viewer.get("/ledger/account/password").headers["Location"] == "/ledger/account/two-factor"
    )


# -- sessions ------------------------------------------------------------------


def test_a_session_ends_after_the_idle_timeout(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    client = logged_in(app, "ana@newsroom.test")
    with frozen_at(T0 + timedelta(minutes=29)):
        assert client.get("/ledger/staff").status_code == 200
    with frozen_at(T0 + timedelta(minutes=58)):  # 29 minutes after the last request
        assert client.get("/ledger/staff").status_code == 200
    with frozen_at(T0 + timedelta(minutes=89)):
        response = client.get("/ledger/staff")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
    fresh(db)
    assert db.scalar(select(StaffSession.revoked_at)) is not None


def test_a_session_ends_after_the_absolute_timeout_however_busy(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    client = logged_in(app, "ana@newsroom.test")
    moment = T0
    while moment < T0 + timedelta(hours=11, minutes=50):
        moment += timedelta(minutes=20)
        with frozen_at(moment):
            assert client.get("/ledger/staff").status_code == 200
    with frozen_at(T0 + timedelta(hours=12, minutes=1)):
        assert client.get("/ledger/staff").status_code == 302


def test_a_cookie_from_before_logout_is_refused(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    client = logged_in(app, "ana@newsroom.test")
    copied = session_cookie(client)
    response = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 303
    assert client.get("/ledger/staff").status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", copied)
    response = thief.get("/ledger/staff")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert len(audit(db, "logout")) == 1


def test_login_starts_a_new_session_and_drops_the_old_one(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    client = app.test_client()
    client.get("/login")
    before = session_cookie(client)
    post_login(client, "ana@newsroom.test")
    assert session_cookie(client) != before
    first = session_cookie(client)
    post_login(client, "ana@newsroom.test")  # logging in again rotates once more
    revived = app.test_client()
    revived.set_cookie("session", first)
    assert revived.get("/ledger/staff").status_code == 302
    assert client.get("/ledger/staff").status_code == 200


def test_a_password_change_signs_out_every_other_session(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "admin")
    laptop = logged_in(app, "ana@newsroom.test")
    tablet = logged_in(app, "ana@newsroom.test", ip="192.0.2.20")
    new_password = "a brand new passphrase"
    response = laptop.post(
        "/ledger/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": new_password,
            "confirm": new_password,
            "csrf_token": csrf_token(laptop),
        },
    )
    assert response.status_code == 303
    assert laptop.get("/ledger/staff").status_code == 200
    assert tablet.get("/ledger/staff").status_code == 302
    assert post_login(app.test_client(), "ana@newsroom.test").status_code == 401
    assert post_login(app.test_client(), "ana@newsroom.test", new_password).status_code == 303
    assert len(audit(db, "password_changed")) == 1


def test_a_short_new_password_is_refused_next_to_its_field(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test")
    client = logged_in(app, "ana@newsroom.test")
    response = client.post(
        "/ledger/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "short",
            "confirm": "short",
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 400
    assert 'id="new_password-error"' in response.get_data(as_text=True)


# -- brute force ---------------------------------------------------------------


@pytest.mark.settings(LOGIN_RATE_LIMIT="1000 per minute", LOGIN_IP_MAX_DELAY_SECONDS=0)
def test_a_hundred_wrong_passwords_lock_the_account_only(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test", "finance")
    make_staff(app, db, "bo@newsroom.test", "finance")
    attacker = app.test_client()
    token = csrf_token(attacker)
    statuses = set()
    for attempt in range(100):
        response = attacker.post(
            "/login",
            data={
                "email": "ana@newsroom.test",
                "password": f"guess {attempt:04d}",
                "csrf_token": token,
            },
            environ_base={"REMOTE_ADDR": "203.0.113.66"},
        )
        statuses.add(response.status_code)
        assert GENERIC in response.get_data(as_text=True)
    assert statuses == {401}

    account = throttle_state(db, email="ana@newsroom.test")
    address = throttle_state(db, ip="203.0.113.66")
    assert account is not None and account.locked_until == T0 + timedelta(minutes=15)
    assert address is not None and address.locked_until is None  # an address is never locked
    lockouts = sorted(e.details["scope"] for e in audit(db, "lockout"))
    assert lockouts == ["account"]

    # The right password now: refused with the same words, from anywhere.
    for ip in ("203.0.113.66", "198.51.100.7"):
        response = post_login(app.test_client(), "ana@newsroom.test", ip=ip)
        assert response.status_code == 401
        assert GENERIC in response.get_data(as_text=True)
    # Another account, from anywhere (the attacker's address too: it may be a shared proxy).
    assert post_login(app.test_client(), "bo@newsroom.test", ip="198.51.100.7").status_code == 303
    assert post_login(app.test_client(), "bo@newsroom.test", ip="203.0.113.66").status_code == 303

    # The lockout ends.
    with frozen_at(T0 + timedelta(minutes=16)):
        assert (
            post_login(app.test_client(), "ana@newsroom.test", ip="198.51.100.7").status_code == 303
        )
        assert (
            post_login(app.test_client(), "bo@newsroom.test", ip="203.0.113.66").status_code == 303
        )


def test_after_a_few_failures_each_attempt_must_wait_longer(app: Flask, db: Session) -> None:
    make_staff(app, db, "ana@newsroom.test")
    client = app.test_client()
    for _ in range(3):
        assert post_login(client, "ana@newsroom.test", "wrong password!!").status_code == 401
    # Third failure: one second to wait, even with the right password.
    assert post_login(client, "ana@newsroom.test").status_code == 401
    reasons = [e.details["reason"] for e in audit(db, "login_failed")]
    assert reasons[-1] == "throttled"
    state = throttle_state(db, email="ana@newsroom.test")
    assert state is not None and state.next_attempt_at == T0 + timedelta(seconds=2)
    with frozen_at(T0 + timedelta(seconds=2)):
        assert post_login(client, "ana@newsroom.test").status_code == 303
    fresh(db)
    assert throttle_state(db, email="ana@newsroom.test").failures == 0  # type: ignore[union-attr]


@pytest.mark.settings(LOGIN_RATE_LIMIT="3 per minute")
def test_login_posts_are_rate_limited_per_address(app: Flask, db: Session) -> None:
    client = app.test_client()
    token = csrf_token(client)
    statuses = [
        client.post(
            "/login",
            data={"email": f"x{i}@newsroom.test", "password": "whatever12345", "csrf_token": token},
            environ_base={"REMOTE_ADDR": "203.0.113.5"},
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    other = client.post(
        "/login",
        data={"email": "y@newsroom.test", "password": "whatever12345", "csrf_token": token},
        environ_base={"REMOTE_ADDR": "203.0.113.6"},
    )
    assert other.status_code == 401
    assert client.get("/login", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200


def test_the_login_rate_limit_lives_in_redis_and_is_shared_by_instances(
    app_config: dict[str, Any], redis_prefix: str
) -> None:
    from app import create_app

    config = {
        **app_config,
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": redis_prefix,
        "LOGIN_RATE_LIMIT": "2 per minute",
    }
    first, second = create_app(config), create_app(config)
    try:
        statuses = []
        for instance in (first, first, second):
            client = instance.test_client()
            statuses.append(
                client.post(
                    "/login",
                    data={
                        "email": "z@newsroom.test",
                        "password": "whatever12345",
                        "csrf_token": csrf_token(client),
                    },
                    environ_base={"REMOTE_ADDR": "203.0.113.9"},
                ).status_code
            )
        assert statuses == [401, 401, 429]
        import redis

        connection = redis.Redis.from_url(REDIS_URL)
        assert list(connection.scan_iter(match=f"*{redis_prefix}*"))
        connection.close()
    finally:
        first.extensions["donations.db"].dispose()
        second.extensions["donations.db"].dispose()


# -- every route ---------------------------------------------------------------


def _concrete(rule: str) -> str:
    path = re.sub(r"<int:[^>]+>", "1", rule)
    return re.sub(r"<[^>]+>", "x", path)


def _rules(app: Flask, method: str, *prefixes: str) -> list[tuple[str, str]]:
    found = [
        (rule.rule, rule.endpoint)
        for rule in app.url_map.iter_rules()
        if method in (rule.methods or ()) and rule.rule.startswith(prefixes)
    ]
    assert found
    return sorted(found)


def test_every_ledger_page_sends_anonymous_visitors_to_login(app: Flask) -> None:
    client = app.test_client()
    for rule, endpoint in _rules(app, "GET", "/ledger"):
        assert required_role(app, endpoint, rule) is not None, f"{rule} is public"
        response = client.get(_concrete(rule))
        assert response.status_code in (302, 401, 403), rule
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/login"), rule


def test_no_role_gets_a_ledger_page_above_its_level(app: Flask, db: Session) -> None:
    for role in ROLES:
        make_staff(app, db, f"{role}@newsroom.test", role)
    clients = {role: logged_in(app, f"{role}@newsroom.test") for role in ROLES}
    for rule, endpoint in _rules(app, "GET", "/ledger"):
        needed = required_role(app, endpoint, rule)
        assert needed in ROLE_RANK, rule
        for role, client in clients.items():
            status = client.get(_concrete(rule)).status_code
            if ROLE_RANK[role] < ROLE_RANK[needed]:
                assert status == 403, (rule, role, status)
            else:
                assert status not in (401, 403) and status < 500, (rule, role, status)


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_every_post_without_a_csrf_token_is_refused(app: Flask, db: Session, who: str) -> None:
    make_staff(app, db, "root@newsroom.test", "admin")
    client = app.test_client() if who == "anonymous" else logged_in(app, "root@newsroom.test")
    entries_before = db.scalar(select(func.count(AuditEntry.id)))
    for rule, _endpoint in _rules(app, "POST", "/login", "/logout", "/ledger"):
        response = client.post(_concrete(rule), data={"email": "root@newsroom.test"})
        assert response.status_code == 400, rule
    fresh(db)
    assert db.scalar(select(func.count(AuditEntry.id))) == entries_before


# -- admin pages and the audit log ---------------------------------------------


def test_an_admin_creates_resets_and_disables_staff_from_the_pages(app: Flask, db: Session) -> None:
    root = make_staff(app, db, "root@newsroom.test", "admin")
    admin = logged_in(app, "root@newsroom.test")
    token = csrf_token(admin)
    bad = admin.post(
        "/ledger/staff",
        data={
            "email": "not an email",
            "role": "finance",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert bad.status_code == 400 and 'id="email-error"' in bad.get_data(as_text=True)
    created = admin.post(
        "/ledger/staff",
        data={
            "email": "Fin@Newsroom.test",
            "role": "finance",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert created.status_code == 303
    fin = db.scalar(select(Staff).where(Staff.email == "fin@newsroom.test"))
    assert fin is not None and fin.role == "finance"
    assert admin.get(f"/ledger/staff/{fin.id}").status_code == 200

    fin_browser = logged_in(app, "fin@newsroom.test")
    new_password = "handed over in person"
    reset = admin.post(
        f"/ledger/staff/{fin.id}/password",
        data={"password": new_password, "confirm": new_password, "csrf_token": token},
    )
    assert reset.status_code == 303
    assert fin_browser.get("/ledger/account/password").status_code == 302
    fin_browser = app.test_client()
    assert post_login(fin_browser, "fin@newsroom.test", new_password).status_code == 303

    unconfirmed = admin.post(f"/ledger/staff/{fin.id}/disable", data={"csrf_token": token})
    assert unconfirmed.status_code == 400
    disabled = admin.post(
        f"/ledger/staff/{fin.id}/disable", data={"confirm": "y", "csrf_token": token}
    )
    assert disabled.status_code == 303
    assert fin_browser.get("/ledger/account/password").status_code == 302
    assert post_login(app.test_client(), "fin@newsroom.test", new_password).status_code == 401
    own = admin.post(f"/ledger/staff/{root.id}/disable", data={"confirm": "y", "csrf_token": token})
    assert own.status_code == 400

    for action in ("staff_created", "password_reset", "staff_disabled"):
        [entry] = [e for e in audit(db, action) if e.details["staff_id"] == fin.id]
        assert entry.actor_id == root.id and entry.details["staff_id"] == fin.id


def test_lower_roles_cannot_manage_staff(app: Flask, db: Session) -> None:
    make_staff(app, db, "fin@newsroom.test", "finance")
    client = logged_in(app, "fin@newsroom.test")
    response = client.post(
        "/ledger/staff",
        data={
            "email": "new@newsroom.test",
            "role": "admin",
            "password": PASSWORD,
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 403
    assert db.scalar(select(Staff).where(Staff.email == "new@newsroom.test")) is None


def test_the_audit_log_page_filters_by_action_and_pages_back(app: Flask, db: Session) -> None:
    from app.staff import record_audit

    root = make_staff(app, db, "root@newsroom.test", "admin")
    for number in range(60):
        record_audit(db, actor=root, action="export", detail={"rows": number})
    db.commit()
    admin = logged_in(app, "root@newsroom.test")
    first = admin.get("/ledger/audit?action=export").get_data(as_text=True)
    assert first.count("<tr><td>") == 50
    assert "rows: 59" in first and "rows: 10" in first and "rows: 9" not in first
    older = re.search(r'href="([^"]*before=\d+[^"]*)"', first)
    assert older
    second = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("<tr><td>") == 10 and "rows: 0" in second
    logins = admin.get("/ledger/audit?action=login").get_data(as_text=True)
    assert logins.count("<tr><td>") == 1 and "root@newsroom.test" in logins


def test_the_audit_log_cannot_be_changed_or_deleted(app: Flask, db: Session) -> None:
    from app.staff import record_audit

    record_audit(db, actor=None, action="export", detail={"rows": 1})
    db.commit()
    for statement in ("UPDATE audit_entries SET action = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text(statement))
        db.rollback()
    assert [json.loads(d) for d in db.scalars(select(AuditEntry.detail))] == [{"rows": 1}]


# -- one address cannot lock everyone out; the password form is throttled ------


@pytest.mark.settings(LOGIN_RATE_LIMIT="1000 per minute", LOGIN_IP_MAX_DELAY_SECONDS=0)
def test_failures_from_a_shared_address_never_lock_out_a_correct_password(
    app: Flask, db: Session
) -> None:
    make_staff(app, db, "ana@newsroom.test", "finance")
    attacker = app.test_client()
    token = csrf_token(attacker)
    for attempt in range(120):
        response = attacker.post(
            "/login",
            data={
                "email": f"guess{attempt}@newsroom.test",
                "password": "not the password at all",
                "csrf_token": token,
            },
            environ_base={"REMOTE_ADDR": "10.0.0.1"},  # the proxy everyone comes through
        )
        assert response.status_code == 401
    address = throttle_state(db, ip="10.0.0.1")
    assert address is not None and address.failures == 120 and address.locked_until is None
    assert not [e for e in audit(db, "lockout") if e.details["scope"] == "ip"]
    response = post_login(app.test_client(), "ana@newsroom.test", ip="10.0.0.1")
    assert response.status_code == 303


@pytest.mark.settings(LOGIN_RATE_LIMIT="1000 per minute", LOGIN_IP_MAX_DELAY_SECONDS=1)
def test_failures_from_an_address_slow_it_down_up_to_a_cap(app: Flask, db: Session) -> None:
    import time

    make_staff(app, db, "ana@newsroom.test", "finance")
    client = app.test_client()
    token = csrf_token(client)
    timings = []
    for attempt in range(22):
        started = time.monotonic()
        client.post(
            "/login",
            data={"email": f"g{attempt}@x.test", "password": "nope nope nope", "csrf_token": token},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        timings.append(time.monotonic() - started)
    assert sorted(timings)[10] < 0.8  # the free failures are not slowed
    assert 1.0 <= timings[-1] < 2.5  # then slowed (2^n s), never past the cap
    started = time.monotonic()
    assert post_login(app.test_client(), "ana@newsroom.test", ip="10.0.0.2").status_code == 303
    assert time.monotonic() - started >= 1.0  # slowed, not refused


def test_wrong_current_passwords_on_the_password_form_lock_the_account(
    app: Flask, db: Session
) -> None:
    make_staff(app, db, "ana@newsroom.test", "finance")
    client = logged_in(app, "ana@newsroom.test")
    token = csrf_token(client)
    moment = T0
    for attempt in range(10):
        with frozen_at(moment):
            response = client.post(
                "/ledger/account/password",
                data={
                    "current_password": f"guess number {attempt}",
                    "new_password": "a brand new passphrase",
                    "confirm": "a brand new passphrase",
                    "csrf_token": token,
                },
            )
            assert response.status_code in (400, 429), attempt
        state = throttle_state(db, email="ana@newsroom.test")
        fresh(db)
        if state is not None and state.locked_until is None and state.next_attempt_at:
            moment = max(moment, state.next_attempt_at)
    state = throttle_state(db, email="ana@newsroom.test")
    assert state is not None and state.locked_until is not None
    with frozen_at(moment + timedelta(minutes=1)):
        # The right current password is refused too while the account is locked,
        refused = client.post(
            "/ledger/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase",
                "confirm": "a brand new passphrase",
                "csrf_token": token,
            },
        )
        assert refused.status_code == 400, refused.headers.get("Location")
        # and so is a login with it.
        assert post_login(app.test_client(), "ana@newsroom.test").status_code == 401
    assert len(audit(db, "password_change_failed")) == 11  # ten guesses and the locked one


def test_the_audit_log_keeps_no_typed_email_only_the_account(app: Flask, db: Session) -> None:
    staff = make_staff(app, db, "ana@newsroom.test")
    secretish = "MyS3cretPassw0rd!"
    post_login(app.test_client(), "ana@newsroom.test", "wrong password here")
    post_login(app.test_client(), secretish, "wrong password here")  # typed in the email field
    failures = audit(db, "login_failed")
    assert sorted((e.details.get("staff_id") or 0, e.details["reason"]) for e in failures) == [
        (0, "unknown_email"),
        (staff.id, "bad_password"),
    ]
    everything = " ".join(e.detail for e in db.scalars(select(AuditEntry)))
    assert secretish not in everything and secretish.lower() not in everything
    assert "ana@newsroom.test" not in " ".join(e.detail for e in failures)


def test_rotate_secrets_encrypts_every_stored_secret_under_the_newest_key(
    app: Flask, db: Session
) -> None:
    staff = make_staff(app, db, "ana@newsroom.test", totp=True)
    plain = staff.totp_secret
    assert plain is not None and not plain.startswith("fernet:")  # as before migration 0011
    from app.cli import main

    result = app.test_cli_runner().invoke(main, args=["staff", "rotate-secrets"])
    assert result.exit_code == 0, result.output
    assert "1 staff accounts" in result.output
    fresh(db)
    stored = db.scalar(text("SELECT totp_secret FROM staff_members"))
    assert stored.startswith("fernet:") and plain not in stored
