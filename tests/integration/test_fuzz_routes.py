"""Every route in the app's URL map, GET and POST, with garbage paths, query
strings and forms (NUL, control characters, huge and negative integers,
digits of other scripts, CR/LF, long and odd text, JSON where a form belongs,
with and without a valid CSRF token), as an admin under /ledger: no 5xx, on
SQLite and PostgreSQL. A seeded generator, so a failure names a request that
can be replayed; about 1,000 requests per database (10,000 with SLOW_TESTS=1).
"""

from __future__ import annotations

import os
import random
import re
import urllib.parse
import uuid
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.staff import create_staff
from tests.integration.test_auth import PASSWORD, csrf_token, logged_in
from tests.integration.test_donate import SESSIONS_URL, checkout_session

REQUESTS = 10_000 if os.environ.get("SLOW_TESTS") else 1_000
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))

NASTY = [
    "",
    "0",
    "1",
    "-1",
    "42",
    "9" * 19,
    "9" * 20,
    "-" + "9" * 20,
    "9223372036854775807",
    "9223372036854775808",
    "1e999",
    "nan",
    "1_000",
    "²",
    "٣",
    "\uff11\uff12",  # fullwidth 12
    "x\x00y",
    "\x00",
    "\x01\x02",
    "a\r\nSet-Cookie: x=1",
    "\r\n",
    "\t",
    "x" * 5000,
    "é" * 300,
    "😀",
    "‮evil",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%",
    "%00",
    "../../etc/passwd",
    "//evil.example/x",
    "/ledger/\r\n",
    "2026-11-01",
    "2026-02-30",
    "0001-01-01",
    "9999-12-31",
    "99999-01-01",
    "usd",
    "USD",
    "jpy",
    "xxx",
    "once",
    "month",
    "year",
    "admin",
    "viewer",
    "y",
    "25",
    "25.00",
    "0.001",
    "-25",
    "10000000000",
    "ana@newsroom.test",
    "a@b",
    "cs_test_a1b2c3",
    "evt_1",
    "ch_1",
    "failed",
    "dead",
    "pending",
    "charge.succeeded",
    "MjAyNi0xMS0wMVQwMDowMDowMCswMDowMAprZXk",  # a journal cursor-shaped token
    "=cmd|' /C calc'!A0",
]
ARG_NAMES = [
    "after",
    "before",
    "q",
    "status",
    "currency",
    "type",
    "kind",
    "campaign",
    "donor",
    "since",
    "until",
    "action",
    "session_id",
    "amount",
    "frequency",
    "utm_source",
    "utm_campaign",
    "next",
    "page",
    "month",
]
FIELD_NAMES = [
    "email",
    "password",
    "next",
    "code",
    "current_password",
    "new_password",
    "confirm",
    "role",
    "required",
    "nonce",
    "amount",
    "preset",
    "currency",
    "frequency",
    "name",
    "comment",
    "campaign",
    "cover_fee",
    "utm_source",
    "event_ids",
    "all",
]


def _value(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return rng.choice(NASTY)
    return "".join(
        chr(rng.choice([0, 1, 10, 13, 31, 127, 0xA0, 0x2028, 0xFEFF, rng.randrange(32, 0x3000)]))
        for _ in range(rng.randrange(1, 12))
    )


def _path(rule: str, rng: random.Random) -> str:
    def fill(match: re.Match[str]) -> str:
        converter = match.group(1) or "string"
        if converter == "int":
            return rng.choice(["0", "1", "2", "9" * 19, "9" * 20, "9" * 40, "007"])
        if converter == "path":
            return urllib.parse.quote(rng.choice(NASTY) or "x", safe="/")
        return urllib.parse.quote(rng.choice(NASTY) or "x", safe="")

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", fill, rule)


def _query(rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(ARG_NAMES) if rng.random() < 0.85 else _value(rng)
        pairs.append((key, _value(rng)))
    text = urllib.parse.urlencode(pairs)
    if rng.random() < 0.05:
        text += "&raw=%FF%FE%00"
    return text


def _form(rng: random.Random, token: str) -> dict[str, str]:
    data = {rng.choice(FIELD_NAMES): _value(rng) for _ in range(rng.randrange(0, 6))}
    if rng.random() < 0.6:
        data["csrf_token"] = token
    return data


def _stub_stripe(stripe_http: responses.RequestsMock) -> None:
    missing = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    stripe_http.get(re.compile(r"https://api\.stripe\.com/.*"), json=missing, status=404)
    stripe_http.post(re.compile(r"https://api\.stripe\.com/.*"), json=missing, status=404)


class Admin:
    """A logged-in admin; a new account and login whenever fuzzing has ended
    the session (a password reset, a two-factor reset, a disabled account)."""

    def __init__(self, app: Flask, db: Session) -> None:
        self.app, self.db = app, db
        self.client, self.token = self._login()

    def _login(self) -> tuple[FlaskClient, str]:
        email = f"fuzz-{uuid.uuid4().hex[:10]}@newsroom.test"
        create_staff(
            self.db,
            email=email,
            role="admin",
            password=PASSWORD,
            hasher=self.app.extensions["donations.password_hasher"],
        )
        self.db.commit()
        client = logged_in(self.app, email, ip=f"192.0.2.{random.randrange(1, 250)}")
        return client, csrf_token(client)

    def check(self) -> None:
        if self.client.get("/ledger/account/password").status_code != 200:
            self.client, self.token = self._login()


LENIENT = {
    "LOGIN_RATE_LIMIT": "100000 per minute",
    "LOGIN_IP_MAX_DELAY_SECONDS": 0,
    "LOGIN_FREE_FAILURES": 1000,
    "LOGIN_MAX_FAILURES": 100000,
}


@pytest.mark.settings(**LENIENT)
def test_no_garbage_request_to_any_route_is_a_5xx(
    app: Flask, db: Session, stripe_http: responses.RequestsMock
) -> None:
    _stub_stripe(stripe_http)
    _fuzz(app, db, REQUESTS)


def test_no_garbage_request_to_the_sandbox_routes_is_a_5xx_either(
    app_config: dict[str, Any], stripe_http: responses.RequestsMock
) -> None:
    from app import create_app

    sandbox = create_app({**app_config, **LENIENT, "STRIPE_SECRET_KEY": None})
    database = sandbox.extensions["donations.db"]
    session = database.session()
    try:
        assert "sandbox" in sandbox.blueprints
        _fuzz(sandbox, session, REQUESTS // 2)
    finally:
        session.close()
        database.dispose()


def _fuzz(app: Flask, db: Session, requests: int) -> None:
    rng = random.Random(SEED)
    rules = sorted(
        (rule.rule, sorted((rule.methods or set()) & {"GET", "POST"}))
        for rule in app.url_map.iter_rules()
    )
    assert len(rules) > 20
    admin = Admin(app, db)
    anonymous = app.test_client()
    failures: list[str] = []
    for number in range(requests):
        rule, methods = rules[number % len(rules)]
        if not methods:
            continue
        method = rng.choice(methods)
        if rule == "/logout" and method == "POST":
            continue  # would only end the admin's session
        path = _path(rule, rng)
        query = _query(rng)
        url = f"{path}?{query}" if query else path
        staff = rule.startswith("/ledger") and rng.random() < 0.9
        client = admin.client if staff else anonymous
        kwargs: dict[str, Any] = {}
        if method == "POST":
            shape = rng.random()
            if shape < 0.1:
                kwargs["json"] = rng.choice([[1], {"amount": 25}, "x", {"email": ["a"]}])
            elif shape < 0.15:
                kwargs["data"] = _value(rng).encode("utf-8", "replace")
                kwargs["content_type"] = "text/plain"
            else:
                kwargs["data"] = _form(rng, admin.token)
        response = client.open(url, method=method, **kwargs)
        try:  # as a server would: a streamed body (the CSVs) runs to its end, then closes
            response.get_data()
        finally:
            response.close()
        if response.status_code >= 500:
            failures.append(f"#{number} {method} {url!r} {kwargs!r} -> {response.status_code}")
        if staff and number % 25 == 0:
            admin.check()
    assert failures == [], "\n".join(failures[:20])
