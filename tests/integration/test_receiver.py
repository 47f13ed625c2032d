"""POST /webhooks/stripe: only correctly signed, fresh, well-formed events are
stored, each once, and the answer is 2xx only once the row is committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app import create_app
from app.clock import frozen_at
from app.settings import ConfigError
from tests.conftest import WEBHOOK_SECRET
from tests.servers import live_app
from tests.stripe_helpers import encode, make_event, post_event, sign, stripe_object
from webhooks.inbox import StripeEvent

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())


@pytest.fixture
def frozen() -> Iterator[None]:
    with frozen_at(NOW):
        yield


def charge_event(**kwargs: Any) -> dict[str, Any]:
    charge = stripe_object("charge", id="ch_receiver_1")
    return make_event("charge.succeeded", charge, created=NOW_TS - 5, **kwargs)


def count_events(db: Session) -> int:
    count = db.scalar(select(func.count()).select_from(StripeEvent)) or 0
    db.commit()  # end the transaction: on SQLite it holds the write lock
    return count


def post_raw(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(
        "/webhooks/stripe", data=body, headers=headers, content_type="application/json"
    )


def test_a_signed_event_is_stored_once_with_its_fields(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    event = charge_event(event_id="evt_stored_1")

    response = post_event(client, event, WEBHOOK_SECRET, timestamp=NOW_TS)

    assert response.status_code == 200
    row = db.scalars(select(StripeEvent)).one()
    assert row.stripe_event_id == "evt_stored_1"
    assert row.type == "charge.succeeded"
    assert row.api_version == event["api_version"]
    assert row.livemode is False
    assert row.stripe_created_at == datetime.fromtimestamp(NOW_TS - 5, UTC)
    assert row.stripe_object_id == "ch_receiver_1"
    assert row.payload == encode(event).decode()
    assert row.status == "pending"
    assert row.attempts == 0
    assert row.received_at == NOW
    assert row.next_attempt_at == NOW


def test_a_duplicate_delivery_is_acknowledged_and_adds_nothing(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    event = charge_event(event_id="evt_twice")

    first = post_event(client, event, WEBHOOK_SECRET, timestamp=NOW_TS)
    second = post_event(client, event, WEBHOOK_SECRET, timestamp=NOW_TS + 60)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json() == {"received": "duplicate"}
    assert count_events(db) == 1


def test_an_unknown_event_type_is_stored_and_acknowledged(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    event = make_event("radar.early_fraud_warning.created", {"id": "issfr_1"}, created=NOW_TS)

    response = post_event(client, event, WEBHOOK_SECRET, timestamp=NOW_TS)

    assert response.status_code == 200
    assert db.scalars(select(StripeEvent.type)).one() == "radar.early_fraud_warning.created"


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("missing header", lambda body: {}),
        ("wrong secret", lambda body: {"Stripe-Signature": sign(body, "whsec_other", NOW_TS)}),
        (
            "stale timestamp",
            lambda body: {"Stripe-Signature": sign(body, WEBHOOK_SECRET, NOW_TS - 301)},
        ),
        (
            "future timestamp",
            lambda body: {"Stripe-Signature": sign(body, WEBHOOK_SECRET, NOW_TS + 301)},
        ),
        (
            "tampered body",
            lambda body: {"Stripe-Signature": sign(body + b" ", WEBHOOK_SECRET, NOW_TS)},
        ),
        ("garbage header", lambda body: {"Stripe-Signature": "nonsense"}),
        ("no v1", lambda body: {"Stripe-Signature": f"t={NOW_TS},v0=abc"}),
        ("non-ascii v1", lambda body: {"Stripe-Signature": f"t={NOW_TS},v1=\u00e9\u00e9"}),
        ("negative t", lambda body: {"Stripe-Signature": sign(body, WEBHOOK_SECRET, -NOW_TS)}),
    ],
)
def test_an_event_without_a_valid_fresh_signature_is_refused_and_not_stored(
    client: FlaskClient, db: Session, frozen: None, case: str, headers: Any
) -> None:
    body = encode(charge_event())

    response = post_raw(client, body, headers(body))

    assert response.status_code == 400, case
    assert count_events(db) == 0


def test_timestamps_just_inside_the_tolerance_either_way_are_accepted(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    early = post_event(client, charge_event(), WEBHOOK_SECRET, timestamp=NOW_TS - 300)
    late = post_event(client, charge_event(), WEBHOOK_SECRET, timestamp=NOW_TS + 300)

    assert (early.status_code, late.status_code) == (200, 200)
    assert count_events(db) == 2


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("broken json", b'{"id": "evt_1", "type": '),
        ("not utf-8", b'{"id": "evt_\xff\xfe", "type": "charge.succeeded"}'),
        ("json list", b"[1, 2, 3]"),
        ("no id", encode({"object": "event", "type": "charge.succeeded", "created": NOW_TS})),
        ("no type", encode({"object": "event", "id": "evt_x", "created": NOW_TS})),
        ("no created", encode({"object": "event", "id": "evt_x", "type": "charge.succeeded"})),
        ("deep nesting", b"[" * 200_000 + b"]" * 200_000),
        # Not JSON by RFC 8259, though Python's json module stored both events.
        ("NaN", b'{"id": "evt_1", "type": "charge.succeeded", "created": 1, "data": NaN}'),
        (
            "lone surrogate",
            b'{"id": "evt_1", "type": "charge.succeeded", "created": 1, "x": "\\ud800"}',
        ),
        ("byte order mark", b'\xef\xbb\xbf{"id": "evt_1", "type": "charge.succeeded"}'),
    ],
)
def test_a_correctly_signed_body_that_is_not_an_event_is_refused_and_not_stored(
    client: FlaskClient, db: Session, frozen: None, case: str, body: bytes
) -> None:
    response = post_raw(client, body, {"Stripe-Signature": sign(body, WEBHOOK_SECRET, NOW_TS)})

    assert response.status_code == 400, case
    assert count_events(db) == 0


def test_a_body_over_one_mebibyte_is_refused_with_413_and_not_stored(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    event = charge_event()
    event["data"]["object"]["description"] = "x" * (1 << 20)
    body = encode(event)

    response = post_raw(client, body, {"Stripe-Signature": sign(body, WEBHOOK_SECRET, NOW_TS)})

    assert response.status_code == 413
    assert count_events(db) == 0


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app behind a real, threaded HTTP server on loopback; yields its URL."""
    with live_app(app) as url:
        yield url


def test_a_chunked_body_over_one_mebibyte_is_refused_with_413(
    live_server: str, db: Session
) -> None:
    body = b"x" * ((1 << 20) + 1)

    def chunks() -> Iterator[bytes]:  # requests sends a generator without Content-Length
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = requests.post(
        f"{live_server}/webhooks/stripe",
        data=chunks(),
        headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)},
        timeout=30,
    )

    assert response.status_code == 413
    assert count_events(db) == 0


def test_any_of_several_configured_secrets_verifies_during_rotation(
    app_config: dict[str, Any], frozen: None
) -> None:
    rotating = create_app({**app_config, "STRIPE_WEBHOOK_SECRET": "whsec_old, whsec_new"})
    client = rotating.test_client()
    try:
        old = post_event(client, charge_event(), "whsec_old", timestamp=NOW_TS)
        new = post_event(client, charge_event(), "whsec_new", timestamp=NOW_TS)
        other = post_event(client, charge_event(), WEBHOOK_SECRET, timestamp=NOW_TS)
        session = rotating.extensions["donations.db"].session()
        stored = count_events(session)
        session.close()
    finally:
        rotating.extensions["donations.db"].dispose()

    assert (old.status_code, new.status_code, other.status_code) == (200, 200, 400)
    assert stored == 2


def test_a_header_with_several_signatures_passes_when_any_one_matches(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    body = encode(charge_event())
    good = sign(body, WEBHOOK_SECRET, NOW_TS).split(",")[1]
    header = f"t={NOW_TS},v1={'0' * 64},{good}"

    response = post_raw(client, body, {"Stripe-Signature": header})

    assert response.status_code == 200
    assert count_events(db) == 1


def test_an_event_from_the_other_mode_is_stored_as_skipped(
    client: FlaskClient, db: Session, frozen: None
) -> None:
    event = charge_event(event_id="evt_live_1", livemode=True)  # our key is a test key

    response = post_event(client, event, WEBHOOK_SECRET, timestamp=NOW_TS)

    assert response.status_code == 200
    row = db.scalars(select(StripeEvent)).one()
    assert (row.stripe_event_id, row.status, row.livemode) == ("evt_live_1", "skipped", True)


def test_the_webhook_needs_no_csrf_token(app_config: dict[str, Any], frozen: None) -> None:
    strict = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    try:
        response = post_event(
            strict.test_client(), charge_event(), WEBHOOK_SECRET, timestamp=NOW_TS
        )
    finally:
        strict.extensions["donations.db"].dispose()

    assert response.status_code == 200


def test_with_no_webhook_secret_outside_production_every_event_is_refused(
    app_config: dict[str, Any], frozen: None
) -> None:
    unset = create_app({**app_config, "STRIPE_WEBHOOK_SECRET": ""})
    try:
        response = post_event(unset.test_client(), charge_event(), "", timestamp=NOW_TS)
    finally:
        unset.extensions["donations.db"].dispose()

    assert unset.config["STRIPE_WEBHOOK_SECRETS"] == []
    assert response.status_code == 400


def test_production_refuses_to_start_without_a_webhook_secret(db_url: str) -> None:
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        create_app(
            {
                "APP_ENV": "production",
                "DATABASE_URL": db_url,
                "SECRET_KEY": "production-secret",
                "STRIPE_SECRET_KEY": "sk_live_donations_suite",
                "STRIPE_WEBHOOK_SECRET": "",
            }
        )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_one_event_delivered_by_eight_threads_at_once_is_stored_once_without_a_5xx(
    live_server: str, db: Session
) -> None:
    body = encode(make_event("charge.succeeded", stripe_object("charge"), event_id="evt_race"))
    url = f"{live_server}/webhooks/stripe"
    start = threading.Barrier(8)
    statuses: list[int] = []

    def deliver() -> None:
        start.wait()
        headers = {
            "Stripe-Signature": sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        }
        statuses.append(requests.post(url, data=body, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    assert count_events(db) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_pooled_connection_the_database_dropped_is_replaced_and_the_event_stored(
    client: FlaskClient, app: Flask, db: Session, frozen: None
) -> None:
    first = post_event(
        client, charge_event(event_id="evt_before_drop"), WEBHOOK_SECRET, timestamp=NOW_TS
    )
    assert first.status_code == 200
    # Every idle connection of the route's pool is killed by the server.
    db.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    db.commit()
    after = post_event(
        client, charge_event(event_id="evt_after_drop"), WEBHOOK_SECRET, timestamp=NOW_TS
    )
    assert after.status_code == 200, after.get_data(as_text=True)
    assert after.get_json() == {"received": "stored"}
    assert count_events(db) == 2


def test_the_webhook_answer_sets_no_cookie_and_carries_the_fixed_headers(
    client: FlaskClient, frozen: None
) -> None:
    response = post_event(client, charge_event(), WEBHOOK_SECRET, timestamp=NOW_TS)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert (
        response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert len(response.headers["X-Request-Id"]) == 32
    refused = post_raw(client, b"{}", {})
    assert refused.status_code == 400 and "Set-Cookie" not in refused.headers
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/webhooks/stripe").status_code == 405
