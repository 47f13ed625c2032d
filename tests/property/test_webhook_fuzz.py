"""Fuzz POST /webhooks/stripe with generated bodies and headers (hypothesis):
Stripe-shaped events, mutated ones, arbitrary JSON and bytes, an oversized
body; signatures valid, made with another secret, stale, from the future, of
another body, tampered, garbled or missing; odd content types. A 2xx only for
a validly signed event, a 4xx for everything else, never a 5xx, and no row
from a request that was not validly signed.

On SQLite in-process: 1,000 examples in CI, 100,000 with SLOW_TESTS=1.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests import event_factory as ef
from tests.conftest import WEBHOOK_SECRET
from tests.stripe_helpers import encode, sign
from webhooks.inbox import StripeEvent
from webhooks.receiver import MAX_BODY_BYTES, TOLERANCE_SECONDS

SLOW = bool(os.environ.get("SLOW_TESTS"))
EXAMPLES = 100_000 if SLOW else 1_000

POOL = (
    ef.full_sequence().events
    + ef.failed_renewal_then_retry("fz").events
    + ef.payout_failed("fz", 700, start=ef.T0).events
    + ef.old_version_membership("fzo").events
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@st.composite
def event_bodies(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(POOL))))
    how = draw(st.sampled_from(["as is", "new id", "drop", "replace", "nest"]))
    if how == "new id":
        event["id"] = f"evt_fuzz_{draw(st.integers(0, 10**12))}"
    elif how == "drop":
        event.pop(draw(st.sampled_from(sorted(event))), None)
    elif how == "replace":
        event[draw(st.sampled_from([*sorted(event), "extra"]))] = draw(JSON)
    elif how == "nest":
        event["data"] = {"object": draw(JSON)}
    return encode(event)


BODIES = st.one_of(
    event_bodies(),
    st.binary(max_size=300),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.sampled_from(
        [
            b"",
            b"{}",
            b"[]",
            b"null",
            b'{"id": 1}',
            b"\xff\xfe",
            b"{" * 5000,
            b"[" * 100_000,
            b"x" * (MAX_BODY_BYTES + 1),
        ]
    ),
)
SIGNATURES = st.sampled_from(
    [
        "valid",
        "valid among others",
        "missing",
        "garbage",
        "other secret",
        "stale",
        "future",
        "other body",
        "tampered body",
        "no v1",
        "v0 only",
        "empty",
        "t twice",
    ]
)


def signature_header(kind: str, body: bytes, garbage: str) -> tuple[str | None, bytes]:
    """The Stripe-Signature for `kind` and the body actually sent."""
    now = int(time.time())
    if kind == "valid":
        return sign(body, WEBHOOK_SECRET, now), body
    if kind == "valid among others":
        good = sign(body, WEBHOOK_SECRET, now).split(",")[1]
        return f"t={now},v1={'0' * 64},{good},v0=abc", body
    if kind == "missing":
        return None, body
    if kind == "garbage":
        return garbage, body
    if kind == "other secret":
        return sign(body, "whsec_someone_else", now), body
    if kind == "stale":
        return sign(body, WEBHOOK_SECRET, now - TOLERANCE_SECONDS - 60), body
    if kind == "future":
        return sign(body, WEBHOOK_SECRET, now + TOLERANCE_SECONDS + 60), body
    if kind == "other body":
        return sign(body + b" ", WEBHOOK_SECRET, now), body
    if kind == "tampered body":
        return sign(body, WEBHOOK_SECRET, now), body + b"\n" if body else b"x"
    if kind == "no v1":
        return f"t={now}", body
    if kind == "v0 only":
        return sign(body, WEBHOOK_SECRET, now).replace("v1=", "v0="), body
    if kind == "empty":
        return "", body
    # "t twice": the first t is the one signed with; a second one is ignored
    signed = sign(body, WEBHOOK_SECRET, now - TOLERANCE_SECONDS - 60)
    return f"{signed},t={now}", body


def stored(db: Session) -> int:
    count = db.scalar(select(func.count()).select_from(StripeEvent)) or 0
    db.rollback()  # end the read: the route writes next
    return count


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.timeout(36_000 if SLOW else 600)
def test_only_a_validly_signed_event_is_acknowledged_and_nothing_is_a_5xx(
    client: FlaskClient, db: Session
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not SLOW,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(
        body=BODIES,
        kind=SIGNATURES,
        garbage=PRINTABLE,
        content_type=st.sampled_from(
            [
                "application/json",
                "text/plain",
                "",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
            ]
        ),
        extra=st.dictionaries(
            st.sampled_from(
                ["X-Forwarded-For", "Content-Encoding", "Stripe-Version", "User-Agent", "Accept"]
            ),
            PRINTABLE,
            max_size=3,
        ),
    )
    def check(
        body: bytes, kind: str, garbage: str, content_type: str, extra: dict[str, str]
    ) -> None:
        header, sent = signature_header(kind, body, garbage)
        headers = {**extra, "Content-Type": content_type}
        if header is not None:
            headers["Stripe-Signature"] = header
        before = stored(db)
        response = client.post("/webhooks/stripe", data=sent, headers=headers)
        after = stored(db)
        validly_signed = kind in ("valid", "valid among others") and len(sent) <= MAX_BODY_BYTES
        assert response.status_code < 500, (kind, response.status_code)
        if 200 <= response.status_code < 300:
            assert validly_signed, (kind, response.status_code)
            assert after - before in (0, 1)
        else:
            assert 400 <= response.status_code < 500, (kind, response.status_code)
            assert after == before, kind
        if validly_signed and body in ENCODED_POOL:
            assert response.status_code == 200

    check()


ENCODED_POOL = {encode(event) for event in POOL}
