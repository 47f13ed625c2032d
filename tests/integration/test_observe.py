"""The operator's view: /metrics in Prometheus' text format (loopback or the
configured bearer token only) with the webhook pipeline, the outbox, checkout
errors and latency per endpoint; JSON log lines with the request id, and no
donor email in them whatever a request carried."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app.observe.logs import HANDLER_NAME
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_donate import SESSIONS_URL, form_data
from tests.stripe_helpers import make_event, post_event, stripe_object

EMAIL = "reader.private@example.org"


def samples(
    client: FlaskClient, **kwargs: Any
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    page = client.get("/metrics", **kwargs)
    assert page.status_code == 200
    assert page.content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(page.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_show_the_inbox_outbox_deliveries_and_latency_per_endpoint(
    client: FlaskClient,
) -> None:
    before = samples(client)
    event = make_event("charge.succeeded", stripe_object("charge"))
    assert post_event(client, event, WEBHOOK_SECRET).status_code == 200
    assert post_event(client, event, WEBHOOK_SECRET).status_code == 200  # a duplicate
    assert post_event(client, event, "whsec_wrong").status_code == 400
    assert client.get(f"/donate?utm_source={EMAIL}").status_code == 200
    after = samples(client)

    assert value(after, "donations_webhook_events", status="pending") == 1
    assert value(after, "donations_webhook_events", status="dead") == 0
    assert value(after, "donations_inbox_lag_seconds") >= 0
    assert ("donations_outbox_backlog", frozenset()) in after
    for outcome in ("stored", "duplicate", "refused"):
        name = "donations_webhook_deliveries_total"
        assert value(after, name, outcome=outcome) == value(before, name, outcome=outcome) + 1
    count = "donations_http_request_duration_seconds_count"
    labels = {"endpoint": "donate.form", "method": "GET", "status": "200"}
    assert value(after, count, **labels) == value(before, count, **labels) + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "utm_source" not in text and EMAIL not in text  # endpoints, never URLs


def test_a_checkout_stripe_refused_is_counted_by_kind(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(
        SESSIONS_URL,
        status=429,
        json={"error": {"type": "rate_limit_error", "message": "Too many"}},
    )
    name = "donations_checkout_errors_total"
    before = value(samples(client), name, kind="rate_limited")
    assert client.post("/donate", data=form_data(client)).status_code == 503
    assert value(samples(client), name, kind="rate_limited") == before + 1


def test_metrics_are_refused_from_afar_and_through_a_proxy_without_a_token(
    client: FlaskClient,
) -> None:
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 404
    assert client.get("/metrics").status_code == 200  # loopback, directly


@pytest.mark.settings(METRICS_TOKEN="metrics-token-for-the-scraper")
def test_with_a_token_metrics_need_it_even_from_loopback(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 404
    right = {"Authorization": "Bearer metrics-token-for-the-scraper"}
    far = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", headers=right, environ_base=far).status_code == 200


@pytest.fixture
def json_logs() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.mark.settings(LOG_FORMAT="json")
def test_log_lines_are_json_with_the_request_id_and_never_an_email(
    json_logs: None, client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # The app was made before capsys swapped stderr: make it again inside.
    from app import create_app

    app = create_app({**client.application.config, "LOG_FORMAT": "json"})
    client = app.test_client()
    given = client.get(f"/donate?email={EMAIL}&x=%01", headers={"X-Request-Id": "lb-1234.abcd"})
    assert given.status_code == 400
    assert given.headers["X-Request-Id"] == "lb-1234.abcd"
    made = client.post(
        "/webhooks/stripe", data=json.dumps({"email": EMAIL}), content_type="application/json"
    )
    assert made.status_code == 400
    made_id = made.headers["X-Request-Id"]
    assert len(made_id) == 32 and made_id != given.headers["X-Request-Id"]
    hostile = client.get("/donate", headers={"X-Request-Id": "a b <c>"})  # not a token: replaced
    assert hostile.headers["X-Request-Id"] != "a b <c>"
    form = form_data(client, email=EMAIL, amount="not an amount")
    assert client.post(f"/donate?q={EMAIL}", data=form).status_code == 400
    logging.getLogger("app.anything").warning("a careless line about %s", EMAIL)
    app.extensions["donations.db"].dispose()

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    assert EMAIL not in err and "example.org" not in err
    by_id = {line.get("request_id") for line in lines}
    assert {"lb-1234.abcd", made_id} <= by_id
    careless = [line for line in lines if line["logger"] == "app.anything"]
    assert careless[0]["message"] == "a careless line about [email]"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)


def test_log_lines_go_to_the_stream_given_and_a_second_call_replaces_ours(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.observe.logs import configure_logging

    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "INFO", stream=first)
    configure_logging("text", "INFO", stream=second)  # ours replaced, not added
    logging.getLogger("app.anything").info("about %s", EMAIL)
    assert first.getvalue() == ""
    assert second.getvalue() == "info    app.anything: about [email]\n"
    assert capsys.readouterr().err == ""
