"""The CSRF token GET /donate writes (app.extensions.csrf_token, a serializer
made once) is Flask-WTF's own: byte for byte what Flask-WTF's serializer
signs for the same session value and second, accepted by Flask-WTF's
`validate_csrf` and by CSRFProtect on POST, and refused when tampered with or
expired.
"""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask, g, session
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf, validate_csrf
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from wtforms import ValidationError

from app.extensions import csrf_token


def flask_wtf_token(app: Flask, value: str, timestamp: int) -> str:
    """What Flask-WTF's generate_csrf signs (its serializer, key and salt) for
    `value` at `timestamp`."""

    class At(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=At).dumps(value)


def test_the_token_is_byte_for_byte_flask_wtfs(app: Flask) -> None:
    for _ in range(200):  # new values, and the serializer reused
        with app.test_request_context("/donate"):
            token = csrf_token()
            _, timestamp = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").loads(
                token, return_timestamp=True
            )
            assert token == flask_wtf_token(app, session["csrf_token"], int(timestamp.timestamp()))
            assert csrf_token() == token == generate_csrf()  # one per request, as Flask-WTF's
            assert g.csrf_token == token


def test_flask_wtf_validates_the_token_and_refuses_a_tampered_or_expired_one(app: Flask) -> None:
    with app.test_request_context("/donate"):
        token = csrf_token()
        validate_csrf(token)  # no error
        body, _, signature = token.rpartition(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        for tampered in (f"{body}.{flipped}", token[:-2], "x" + token):
            with pytest.raises(ValidationError, match="invalid"):
                validate_csrf(tampered)
        with pytest.raises(ValidationError, match="expired"):
            validate_csrf(token, time_limit=-1)
        old = flask_wtf_token(app, session["csrf_token"], 1_000_000_000)
        with pytest.raises(ValidationError, match="expired"):
            validate_csrf(old)
        other = flask_wtf_token(app, "0" * 40, int(time.time()))
        with pytest.raises(ValidationError, match="do not match"):
            validate_csrf(other)


def test_a_session_value_json_cannot_write_is_replaced_as_flask_wtf_does(app: Flask) -> None:
    with app.test_request_context("/donate"):
        session["csrf_token"] = b"no JSON for bytes"
        token = csrf_token()
        assert isinstance(session["csrf_token"], str)
        validate_csrf(token)


def test_the_pages_token_passes_csrfprotect_on_post(client: FlaskClient) -> None:
    """The form's token from a first visit: CSRFProtect lets the POST through
    to the form's own validation (a 400 for the empty form, never the CSRF
    notice); a tampered one gets the CSRF notice."""
    html = client.get("/donate").get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]*)"', html)
    assert found
    token = found.group(1)
    passed = client.post("/donate", data={"csrf_token": token})
    assert passed.status_code == 400
    assert "This form had expired" not in passed.get_data(as_text=True)
    refused = client.post("/donate", data={"csrf_token": token[:-3] + "abc"})
    assert refused.status_code == 400
    assert "This form had expired" in refused.get_data(as_text=True)
