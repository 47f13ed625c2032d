"""What a first visit to the donation form gets besides the page: the exact
security headers (Flask-Talisman's, written once per view and then assigned
to each response, app.extensions.Headers) and a session cookie that Flask's
own cookie session reads, carrying the CSRF token the page's form holds.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask, Response
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self' https://checkout.stripe.com https://billing.stripe.com; "
    "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
# As main wrote them before the headers were cached (compared by hand, 2026-12-01).
SECURITY_HEADERS = {
    "Content-Security-Policy": POLICY,
    "Permissions-Policy": "browsing-topics=()",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def first_visit(client: FlaskClient, path: str, **headers: str) -> tuple[str, dict[str, str]]:
    client.delete_cookie("session")
    response = client.get(path, headers=headers)
    assert response.status_code == 200, path
    got = {name: value for name, value in response.headers if name != "Set-Cookie"}
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1, cookies
    got["Set-Cookie"] = cookies[0]
    return response.get_data(as_text=True), got


@pytest.mark.parametrize("path", ["/donate", "/ru/donate", "/donate?amount=25&campaign=spring"])
def test_a_first_visit_gets_the_same_security_headers_every_time(
    client: FlaskClient, path: str
) -> None:
    for _ in range(3):  # the first response records them, the next ones reuse them
        _, headers = first_visit(client, path)
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, (path, name)
        assert "Strict-Transport-Security" not in headers  # production only
        assert headers["Vary"] == "Cookie"
        assert re.fullmatch(r"session=[^;]+; HttpOnly; Path=/; SameSite=Lax", headers["Set-Cookie"])
        expected = {*SECURITY_HEADERS, "Content-Type", "Content-Length", "Vary", "Set-Cookie"}
        assert set(headers) == expected | {"X-Request-Id"}


def test_a_view_setting_a_header_itself_still_gets_talismans(client: FlaskClient) -> None:
    """The cached headers are assigned as Flask-Talisman assigns them: a page
    of another view keeps its own headers beside them."""
    response = client.get("/login")
    assert response.headers["Cache-Control"] == "no-store"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


def test_the_session_cookie_is_flasks_own_and_carries_the_forms_csrf_token(
    app: Flask, client: FlaskClient
) -> None:
    html, headers = first_visit(client, "/donate")
    value = headers["Set-Cookie"].split(";", 1)[0].removeprefix("session=")
    stock = SecureCookieSessionInterface().get_signing_serializer(app)
    assert stock is not None
    data = stock.loads(value, max_age=3600)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]*)"', html)
    assert token, "no csrf_token on /donate"
    signed = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token")  # Flask-WTF's
    assert signed.loads(token.group(1), max_age=3600) == data["csrf_token"]
    # Every visit: a new token, a new cookie.
    again, headers_again = first_visit(client, "/donate")
    assert headers_again["Set-Cookie"] != headers["Set-Cookie"]
    assert again != html


@pytest.mark.parametrize("read", [True, False])
@pytest.mark.parametrize("before", [[], [("Vary", "Accept-Encoding")], [("vary", "Cookie")]])
def test_saving_a_session_writes_the_headers_flasks_own_save_writes(
    app: Flask, before: list[tuple[str, str]], read: bool
) -> None:
    """app.extensions.CookieSessions' save of a new session (its own path
    when no Vary is there yet, Flask's otherwise) against Flask's stock one:
    the same headers in the same order, the cookies holding the same data."""
    stock = SecureCookieSessionInterface()
    with app.test_request_context("/donate"):
        session = stock.session_class()
        if read:  # as Flask-WTF's token does: "csrf_token" in session
            assert session.get("csrf_token") is None
        session["csrf_token"] = "0123456789abcdef"
        ours, theirs = Response(headers=before), Response(headers=before)
        app.session_interface.save_session(app, session, ours)
        stock.save_session(app, session, theirs)

    def readable(response: Response) -> list[tuple[str, Any]]:
        serializer = stock.get_signing_serializer(app)
        assert serializer is not None
        out: list[tuple[str, Any]] = []
        for name, value in response.headers:
            if name == "Set-Cookie":
                cookie, _, attributes = value.partition(";")
                out.append((name, (serializer.loads(cookie.removeprefix("session=")), attributes)))
            else:
                out.append((name, value))
        return out

    assert readable(ours) == readable(theirs)
    assert ours.headers.getlist("Vary") == theirs.headers.getlist("Vary")
