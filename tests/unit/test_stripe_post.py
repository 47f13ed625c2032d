"""The requests app.stripe_api makes itself (not through stripe-python): the
Checkout Session POST, and the look-ups and lists (GETs) of the worker and
sync: the same encoding, headers, retries and error kinds as stripe-python's,
against Stripe stubbed at HTTP (`responses`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import responses
import stripe as stripe_python
from stripe._encode import _api_encode

from app.payments import PaymentsError
from app.stripe_api import StripeApi, backoff_seconds, form_encode

URL = "https://api.stripe.com/v1/checkout/sessions"
TXN_URL = "https://api.stripe.com/v1/balance_transactions/txn_1"
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


def look_up(stripe: StripeApi) -> dict[str, Any]:
    return stripe.retrieve_balance_transaction("txn_1")


# Each call of our own, its method and address: the retries and error kinds
# are the same for both.
CALLS: dict[str, tuple[Callable[[StripeApi], dict[str, Any]], str, str]] = {
    "post": (create, responses.POST, URL),
    "get": (look_up, responses.GET, TXN_URL),
}


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
@pytest.mark.parametrize("call", sorted(CALLS))
def test_what_stripe_python_retries_is_retried_with_the_same_key(
    stripe_http: responses.RequestsMock, first: dict[str, Any], call: str
) -> None:
    make, method, url = CALLS[call]
    stripe_http.add(method, url, **first)
    stripe_http.add(method, url, json={"id": "cs_test_1"})
    stripe, slept = api()

    assert make(stripe)["id"] == "cs_test_1"
    keys = {call.request.headers.get("Idempotency-Key") for call in stripe_http.calls}
    expected = {"checkout-session-create:co_1"} if method == responses.POST else {None}
    assert len(stripe_http.calls) == 2 and keys == expected
    assert slept == [0.5]


@pytest.mark.parametrize("call", sorted(CALLS))
def test_retries_stop_at_the_limit_with_stripe_pythons_backoff(
    stripe_http: responses.RequestsMock, call: str
) -> None:
    make, method, url = CALLS[call]
    for _ in range(4):
        stripe_http.add(method, url, status=503, json={"error": {"type": "api_error"}})
    stripe, slept = api(retries=3)

    with pytest.raises(PaymentsError) as failed:
        make(stripe)

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
@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_answer_not_retried_is_the_kind_stripe_pythons_error_maps_to(
    stripe_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    stub: dict[str, Any],
    kind: str,
    call: str,
) -> None:
    make, method, url = CALLS[call]
    stub = dict(stub)  # the parameter is shared by both calls' runs
    headers = {"Request-Id": "req_1", **stub.pop("headers", {})}
    stripe_http.add(method, url, **stub, headers=headers)
    stripe, slept = api(retries=0 if stub.get("status") == 502 else 2)

    with pytest.raises(PaymentsError) as failed:
        make(stripe)

    assert failed.value.kind == kind
    assert len(stripe_http.calls) == 1 and slept == []
    assert "a+b" not in caplog.text and "example.org" not in caplog.text


@pytest.mark.parametrize(
    ("ours", "path", "params"),
    [
        (
            lambda api: api.list_invoice_payments(payment_intent="pi_1"),
            "/v1/invoice_payments",
            {
                "payment": {"type": "payment_intent", "payment_intent": "pi_1"},
                "expand": ["data.invoice"],
                "limit": 100,
            },
        ),
        (
            lambda api: api.retrieve_checkout_session("cs_test_1"),
            "/v1/checkout/sessions/cs_test_1",
            {"expand": ["payment_intent"]},
        ),
        (
            lambda api: api.list_page(
                "balance_transactions",
                {"created": {"gte": 1735689600, "lt": 1738368000}, "limit": 100},
            ),
            "/v1/balance_transactions",
            {"created": {"gte": 1735689600, "lt": 1738368000}, "limit": 100},
        ),
        (lambda api: api.retrieve_customer("cus_1"), "/v1/customers/cus_1", {}),
    ],
    ids=["invoice-payments", "checkout-session", "list-page", "customer"],
)
def test_a_look_up_is_the_get_stripe_python_sends(
    stripe_http: responses.RequestsMock,
    ours: Callable[[StripeApi], dict[str, Any]],
    path: str,
    params: dict[str, Any],
) -> None:
    # The same address, query string and headers (key, version, no body and
    # so no Content-Type, no idempotency key) as stripe-python's own GET.
    answer = {"object": "list", "data": [], "has_more": False}
    stripe_http.get(f"https://api.stripe.com{path}", json=answer)
    stripe, _ = api()
    theirs = stripe_python.StripeClient(
        "sk_test_x",
        stripe_version=VERSION,
        http_client=stripe_python.RequestsClient(),
        max_network_retries=0,
    )

    ours(stripe)
    theirs.raw_request("get", path, **params)

    mine, sdk = (call.request for call in stripe_http.calls)
    assert mine.method == sdk.method == "GET"
    assert mine.url == sdk.url
    assert mine.body is None and sdk.body is None
    for name in ("Authorization", "Stripe-Version", "Content-Type", "Idempotency-Key"):
        assert mine.headers.get(name) == sdk.headers.get(name), name
