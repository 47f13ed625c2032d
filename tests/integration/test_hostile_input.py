"""Hostile input never reaches the database or Stripe and is never a 500: NUL
and control characters in forms and query strings, numbers too large for a
BIGINT, non-ASCII digits, JSON where a form belongs, CR/LF in a redirect,
absurd webhook fields. The catch-all error page logs no SQL parameters.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.donate.models import Checkout
from app.extensions import db_session
from app.staff import StaffSession
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_auth import csrf_token, logged_in, make_staff
from tests.integration.test_donate import SESSIONS_URL, checkout_session, form_data
from tests.stripe_helpers import encode, make_event, sign, stripe_object
from webhooks.inbox import StripeEvent

HUGE = "99999999999999999999"
DONATE_FIELDS = (
    "nonce",
    "currency",
    "frequency",
    "amount",
    "email",
    "name",
    "comment",
    "campaign",
    "utm_source",
)


def count(db: Session, model: type) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("field", DONATE_FIELDS)
def test_nul_in_any_donate_field_is_a_400_with_the_form_before_any_stripe_call(
    client: FlaskClient,
    db: Session,
    stripe_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    field: str,
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = form_data(client, email="nul.reader@example.org", name="Ada Reader")
    data[field] = str(data.get(field, "x")) + "\x00tail"
    with caplog.at_level(logging.DEBUG):
        response = client.post("/donate", data=data)
    assert response.status_code == 400, field
    html = response.get_data(as_text=True)
    assert 'name="nonce"' in html  # the form again, not a bare error page
    if field in ("amount", "email", "name", "comment"):
        assert f'id="{field}-error"' in html, field
    assert len(stripe_http.calls) == 0
    assert count(db, Checkout) == 0
    assert "nul.reader@example.org" not in caplog.text
    assert "Ada Reader" not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "/donate?campaign=spring%00",
        "/donate?utm_source=a%0d%0aSet-Cookie:%20x=1",
        "/donate/thanks?session_id=cs_test_%00",
        "/healthz?x=%01",
    ],
)
def test_control_characters_in_a_query_string_are_a_400_page(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 400, path


def test_nul_in_the_login_form_is_a_400_and_touches_nothing(
    app: Flask, db: Session, client: FlaskClient
) -> None:
    make_staff(app, db, "ana@newsroom.test")
    response = client.post(
        "/login",
        data={
            "email": "ana@newsroom.test\x00",
            "password": "whatever password",
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 400
    assert count(db, StaffSession) == 0


def test_cr_lf_in_next_at_login_is_a_400_and_starts_no_session(
    app: Flask, db: Session, client: FlaskClient
) -> None:
    make_staff(app, db, "ana@newsroom.test")
    response = client.post(
        "/login",
        data={
            "email": "ana@newsroom.test",
            "password": "correct horse battery staple",
            "next": "/ledger/\r\nSet-Cookie: x=1",
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 400
    assert count(db, StaffSession) == 0


@pytest.mark.parametrize(
    "path",
    [
        f"/ledger/donors/{HUGE}",
        f"/ledger/staff/{HUGE}",
        f"/ledger/events/{HUGE}/replay",
        f"/ledger/journal?after={HUGE}",
        f"/ledger/journal?before={HUGE}",
        f"/ledger/journal?donor={HUGE}",
        f"/ledger/memberships?after={HUGE}",
        f"/ledger/events?before={HUGE}",
        f"/ledger/audit?before={HUGE}",
        f"/ledger/audit?before=-{HUGE}",
        "/ledger/donors?q=%C2%B2",  # ²
        "/ledger/memberships?after=%D9%A3",  # Arabic-Indic three
        "/ledger/events?before=%C2%B2",
    ],
)
def test_numbers_too_large_or_not_ascii_are_a_400_or_404(
    app: Flask, db: Session, path: str
) -> None:
    make_staff(app, db, "root@newsroom.test", "admin")
    admin = logged_in(app, "root@newsroom.test")
    response = admin.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)


def test_a_json_body_posted_to_donate_is_a_400_and_calls_nobody(
    client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    for body in ([1, 2], {"amount": 25, "email": ["a"]}, "text"):
        response = client.post("/donate", json=body)
        assert response.status_code == 400, body
    assert len(stripe_http.calls) == 0
    assert count(db, Checkout) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"created": 10**15},
        {"created": 2**70},
        {"created": -1},
        {"event_id": "evt_\x00nul"},
        {"event_type": "charge.succeeded\x00"},
    ],
)
def test_a_signed_event_with_absurd_fields_is_a_400_and_stores_nothing(
    client: FlaskClient, db: Session, fields: dict[str, Any]
) -> None:
    event = make_event("charge.succeeded", stripe_object("charge"), event_id="evt_absurd_1")
    if "created" in fields:
        event["created"] = fields["created"]
    if "event_id" in fields:
        event["id"] = fields["event_id"]
    if "event_type" in fields:
        event["type"] = fields["event_type"]
    body = encode(event)
    response = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)},
        content_type="application/json",
    )
    assert response.status_code == 400, fields
    assert count(db, StripeEvent) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_unexpected_database_error_logs_its_type_and_never_its_parameters(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        db_session().execute(text("SELECT CAST(:p AS integer)"), {"p": "leak.me@example.org"})
        return "unreachable"

    app.add_url_rule("/broken-for-test", "broken_for_test", broken)
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().get("/broken-for-test")
    assert response.status_code == 500
    assert "leak.me@example.org" not in caplog.text
    assert "leak.me@example.org" not in response.get_data(as_text=True)
    assert "DataError" in caplog.text


# -- security headers ----------------------------------------------------------


def test_every_page_carries_a_strict_content_security_policy_and_the_usual_headers(
    app: Flask, db: Session
) -> None:
    make_staff(app, db, "root@newsroom.test", "admin")
    admin = logged_in(app, "root@newsroom.test")
    for path in ("/donate", "/login", "/ledger/", "/ledger/staff", "/healthz", "/nowhere"):
        response = admin.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        directives = dict(
            [*part.split(" ", 1), ""][:2] for part in (p.strip() for p in csp.split(";")) if part
        )
        assert directives.get("script-src") == "'self'", (path, csp)
        assert directives.get("style-src") == "'self'", path
        assert directives.get("img-src") == "'self' data:", path
        assert directives.get("frame-ancestors") == "'none'", path
        assert directives.get("base-uri") == "'none'", path
        assert directives.get("object-src") == "'none'", path
        assert directives.get("form-action", "").startswith("'self'"), path
        assert "unsafe-inline" not in csp, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Referrer-Policy"), path
        assert "Strict-Transport-Security" not in response.headers, path  # not production
    for path in ("/login", "/ledger/", "/ledger/staff"):
        assert admin.get(path).headers.get("Cache-Control") == "no-store", path
    assert "no-store" not in (admin.get("/donate").headers.get("Cache-Control") or "")


def test_the_webhook_and_healthz_still_answer_over_plain_http_in_development(
    client: FlaskClient,
) -> None:
    assert client.get("/healthz").status_code == 200  # no redirect to https
    response = client.post("/webhooks/stripe", data=b"{}", content_type="application/json")
    assert response.status_code == 400  # refused for its signature, not redirected


def test_production_sends_hsts_and_a_secure_session_cookie(db_url: str) -> None:
    from app import create_app

    production = create_app(
        {
            "APP_ENV": "production",
            "DATABASE_URL": db_url,
            "SECRET_KEY": "s" * 32,
            "STRIPE_SECRET_KEY": "sk_live_donations_suite",
            "STRIPE_WEBHOOK_SECRET": "whsec_live_suite",
            "PUBLIC_BASE_URL": "https://donate.example.org",
            "REDIS_URL": "redis://127.0.0.1:6379/13",
            "DATA_ENCRYPTION_KEY": "a" * 43 + "=",
            "TRUSTED_PROXY_HOPS": 1,
        }
    )
    try:
        response = production.test_client().get(
            "/login", base_url="https://donate.example.org", headers={"X-Forwarded-Proto": "https"}
        )
        assert response.status_code == 200
        assert "max-age=" in response.headers.get("Strict-Transport-Security", "")
        assert production.config["SESSION_COOKIE_SECURE"] is True
        assert production.config["STAFF_REQUIRE_2FA"] is True
    finally:
        production.extensions["donations.db"].dispose()
