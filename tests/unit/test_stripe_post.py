"""The Checkout Session POST that app.stripe_api makes itself (not through
stripe-python): the same encoding, headers, retries and error kinds as
stripe-python's, against Stripe stubbed at HTTP (`responses`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import responses
from stripe._encode import _api_encode

from app.payments import PaymentsError
from app.stripe_api import StripeApi, backoff_seconds, form_encode

URL = "https://api.stripe.com/v1/checkout/sessions"
VERSION = "2026-10-28.endive"
PARAMS: dict[str, Any] = {
    "mode": "payment",
    "line_items": [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": 2500,
                "product_data": {"name": "Gift & [1] ~ Фонд"},
            },
            "quantity": 1,
        }
    ],
    "metadata": {"checkout_id": "co_1", "campaign": "spring sale=50%"},
    "customer_email": "a+b@example.org",
    "success_url": "https://x.test/donate/thanks?session_id={CHECKOUT_SESSION_ID}",
    "automatic_tax": {"enabled": False},
    "expand": ["payment_intent"],
    "skipped": None,
}


def api(retries: int = 2) -> tuple[StripeApi, list[float]]:
    slept: list[float] = []
    return (
        StripeApi(
            "sk_test_x", api_version=VERSION, max_network_retries=retries, sleep=slept.append
        ),
        slept,
    )


def create(stripe: StripeApi) -> dict[str, Any]:
    return stripe.create_checkout_session(PARAMS, idempotency_key="checkout-session-create:co_1")


def test_the_body_is_encoded_as_stripe_python_encodes_it() -> None:
    theirs = urlencode(list(_api_encode(PARAMS))).replace("%5B", "[").replace("%5D", "]")
    assert form_encode(PARAMS) == theirs


def test_the_post_carries_the_key_version_and_idempotency_key(
    stripe_http: responses.RequestsMock,
) -> None:
    stripe_http.post(URL, json={"id": "cs_test_1", "object": "checkout.session"})
    stripe, _ = api()

    assert create(stripe) == {"id": "cs_test_1", "object": "checkout.session"}
    sent = stripe_http.calls[0].request
    assert sent.headers["Authorization"] == "Bearer sk_test_x"
    assert sent.headers["Stripe-Version"] == VERSION
    assert sent.headers["Idempotency-Key"] == "checkout-session-create:co_1"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.body == form_encode(PARAMS)
    assert int(sent.headers["Content-Length"]) == len(sent.body)


@pytest.mark.parametrize(
    "first",
    [
        {"status": 500, "json": {"error": {"type": "api_error"}}},
        {"status": 409, "json": {"error": {"type": "invalid_request_error"}}},
        {
            "status": 429,
            "json": {"error": {"type": "invalid_request_error"}},
            "headers": {"Stripe-Should-Retry": "true"},
        },
        {"body": requests.ConnectionError("reset")},
        {"body": requests.Timeout("read timed out")},
    ],
    ids=["5xx", "conflict", "told-to-retry", "network", "timeout"],
)
def test_what_stripe_python_retries_is_retried_with_the_same_key(
    stripe_http: responses.RequestsMock, first: dict[str, Any]
) -> None:
    stripe_http.post(URL, **first)
    stripe_http.post(URL, json={"id": "cs_test_1"})
    stripe, slept = api()

    assert create(stripe)["id"] == "cs_test_1"
    keys = {call.request.headers["Idempotency-Key"] for call in stripe_http.calls}
    assert len(stripe_http.calls) == 2 and keys == {"checkout-session-create:co_1"}
    assert slept == [0.5]


def test_retries_stop_at_the_limit_with_stripe_pythons_backoff(
    stripe_http: responses.RequestsMock,
) -> None:
    for _ in range(4):
        stripe_http.post(URL, status=503, json={"error": {"type": "api_error"}})
    stripe, slept = api(retries=3)

    with pytest.raises(PaymentsError) as failed:
        create(stripe)

    assert failed.value.kind == "unavailable" and failed.value.retryable
    assert len(stripe_http.calls) == 4
    assert len(slept) == 3 and 0.5 <= slept[1] <= 1.0 and 1.0 <= slept[2] <= 2.0
    assert all(0.5 <= backoff_seconds(n) <= 5.0 for n in range(1, 10))


@pytest.mark.parametrize(
    ("stub", "kind"),
    [
        ({"status": 429, "json": {"error": {"type": "rate_limit_error"}}}, "rate_limited"),
        ({"status": 400, "json": {"error": {"code": "rate_limit"}}}, "rate_limited"),
        ({"status": 400, "json": {"error": {"type": "invalid_request_error"}}}, "invalid"),
        ({"status": 400, "json": {"error": {"type": "idempotency_error"}}}, "invalid"),
        ({"status": 404, "json": {"error": {"type": "invalid_request_error"}}}, "not_found"),
        ({"status": 401, "json": {"error": {"type": "invalid_request_error"}}}, "auth"),
        ({"status": 403, "json": {"error": {"type": "invalid_request_error"}}}, "auth"),
        ({"status": 402, "json": {"error": {"type": "card_error"}}}, "invalid"),
        (
            {
                "status": 500,
                "json": {"error": {"type": "api_error"}},
                "headers": {"Stripe-Should-Retry": "false"},
            },
            "unavailable",
        ),
        ({"status": 502, "body": "<html>bad gateway</html>"}, "unavailable"),
        ({"status": 200, "body": "not json"}, "invalid"),
        ({"body": requests.exceptions.SSLError("bad certificate")}, "unavailable"),
    ],
)
def test_an_answer_not_retried_is_the_kind_stripe_pythons_error_maps_to(
    stripe_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    stub: dict[str, Any],
    kind: str,
) -> None:
    headers = {"Request-Id": "req_1", **stub.pop("headers", {})}
    stripe_http.post(URL, **stub, headers=headers)
    stripe, slept = api(retries=0 if stub.get("status") == 502 else 2)

    with pytest.raises(PaymentsError) as failed:
        create(stripe)

    assert failed.value.kind == kind
    assert len(stripe_http.calls) == 1 and slept == []
    assert "a+b" not in caplog.text and "example.org" not in caplog.text
