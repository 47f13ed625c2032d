"""The offline payments sandbox: the local checkout page, the Stripe-shaped
objects it makes, and the signed events it delivers over real HTTP, for
one-time gifts, memberships and their renewals.

The app is served by a real HTTP server on loopback (so the sandbox's return
URLs and deliveries cross HTTP); a tiny capturing endpoint of the test's own
stands in for the webhook receiver where the test asserts on what arrives.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import create_app
from app.cli import main
from app.extensions import db_session
from app.payments import PaymentsError
from app.sandbox import SandboxPayments, add_interval, processing_fee, sandbox_allowed
from app.sandbox.models import SandboxObject
from app.settings import load_settings
from app.stripe_api import StripeApi
from tests.conftest import WEBHOOK_SECRET
from tests.servers import live_app

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
API_VERSION = "2026-10-28.endive"


class _LateApp:
    """The live server starts before the app exists (the app's config needs
    the server's port); requests go to whichever app is set."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


class Capture:
    """A webhook endpoint that records what it receives and answers `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                capture.received.append((dict(self.headers.items()), body))
                self.send_response(capture.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/stripe"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.received]

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
def live() -> Iterator[tuple[str, _LateApp]]:
    late = _LateApp()
    with live_app(late) as url:
        yield url, late


@pytest.fixture
def capture() -> Iterator[Capture]:
    endpoint = Capture()
    thread = threading.Thread(target=endpoint.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    thread.join()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhooks/stripe"


@pytest.fixture
def webhook_target(request: pytest.FixtureRequest) -> str:
    """Where the sandbox delivers: the test's capture (default), the app's own
    receiver ("receiver"), or a closed port ("down")."""
    return getattr(request, "param", "capture")


@pytest.fixture
def app_config(
    db_url: str, live: tuple[str, _LateApp], capture: Capture, webhook_target: str
) -> dict[str, Any]:
    base, _late = live
    webhook_url = {"capture": capture.url, "receiver": "", "down": _closed_port_url()}
    return {
        "APP_ENV": "test",
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": None,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PUBLIC_BASE_URL": base,
        "SANDBOX_WEBHOOK_URL": webhook_url[webhook_target],
    }


@pytest.fixture
def served(app: Flask, live: tuple[str, _LateApp]) -> Flask:
    live[1].app = app
    return app


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]*)"', html) or re.search(
        r'value="([^"]*)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html)
    assert match, f"no field {name}"
    return match.group(1)


def donate(client: FlaskClient, frequency: str = "once", amount: str = "25") -> str:
    """Submit the donation form; the sandbox checkout path it redirects to."""
    html = client.get("/donate").get_data(as_text=True)
    response = client.post(
        "/donate",
        data={
            "csrf_token": _token(html),
            "nonce": _hidden(html, "nonce"),
            "frequency": frequency,
            "currency": "usd",
            "amount": amount,
            "email": "reader@example.org",
            "name": "Ada Reader",
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    location = urlsplit(response.headers["Location"])
    assert location.path.startswith("/sandbox/checkout/cs_test_sbx_")
    return location.path


def pay(client: FlaskClient, path: str, card: str, **fields: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200
    return client.post(
        path,
        data={"csrf_token": _token(page.get_data(as_text=True)), "card_number": card, **fields},
    )


def session_id_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def verify(headers: dict[str, str], body: bytes, secret: str) -> bool:
    parts = dict(item.split("=", 1) for item in headers["Stripe-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def sandbox_of(app: Flask) -> SandboxPayments:
    payments = app.extensions["donations.payments"]
    assert isinstance(payments, SandboxPayments)
    return payments


def stored_events(db: Session, *, delivered: bool) -> list[str]:
    condition = (
        SandboxObject.delivered_at.is_not(None)
        if delivered
        else SandboxObject.delivered_at.is_(None)
    )
    rows = db.scalars(
        select(SandboxObject.json)
        .where(SandboxObject.type == "event", condition)
        .order_by(SandboxObject.created_at)
    ).all()
    db.commit()  # end the transaction: on SQLite it holds the write lock
    return [json.loads(raw)["type"] for raw in rows]


# --- choosing the provider ------------------------------------------------------------


def test_the_sandbox_is_never_active_when_a_stripe_key_is_set(tmp_path: Path) -> None:
    base = {"APP_ENV": "test", "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}

    with_key = create_app({**base, "STRIPE_SECRET_KEY": "sk_test_123"})
    without_key = create_app({**base, "STRIPE_SECRET_KEY": None})
    disabled = create_app({**base, "STRIPE_SECRET_KEY": None, "SANDBOX_ENABLED": False})

    assert isinstance(with_key.extensions["donations.payments"], StripeApi)
    assert with_key.test_client().get("/sandbox/checkout/cs_test_sbx_x").status_code == 404
    assert isinstance(without_key.extensions["donations.payments"], SandboxPayments)
    assert disabled.extensions["donations.payments"] is None
    assert disabled.test_client().get("/sandbox/checkout/cs_test_sbx_x").status_code == 404
    production = {"APP_ENV": "production", "STRIPE_SECRET_KEY": None, "SANDBOX_ENABLED": True}
    assert not sandbox_allowed(production)


def test_the_sandbox_fee_is_the_currencys_rate_plus_fixed_part_rounded_half_up() -> None:
    fees = load_settings(environ={"APP_ENV": "test", "SECRET_KEY": "k"})["PROCESSING_FEES"]
    assert processing_fee(1000, "usd", fees) == 29 + 30
    assert processing_fee(2500, "usd", fees) == 73 + 30  # 72.5 rounds up
    assert processing_fee(1150, "usd", fees) == 33 + 30  # 33.35 rounds down
    assert processing_fee(100_000, "usd", fees) == 2900 + 30
    assert processing_fee(2500, "eur", fees) == 38 + 25  # 37.5 rounds up
    assert processing_fee(2500, "gbp", fees) == 38 + 20
    assert processing_fee(3000, "jpy", fees) == 108


# What "cover the fee" adds is the sandbox's own fee for that currency, so the
# newsroom keeps the whole gift: usd 2.9 % + 30, eur 1.5 % + 25, gbp 1.5 % + 20,
# jpy 3.6 % (config/default.toml, [processing_fees]).
@pytest.mark.parametrize(
    ("currency", "amount", "gift_minor"),
    [("usd", "25", 2500), ("eur", "25", 2500), ("gbp", "19.99", 1999), ("jpy", "3000", 3000)],
)
@pytest.mark.parametrize("frequency", ["once", "month"])
def test_covering_the_fee_nets_the_whole_gift_after_the_sandbox_fee_in_each_currency(
    served: Flask,
    client: FlaskClient,
    capture: Capture,
    currency: str,
    amount: str,
    gift_minor: int,
    frequency: str,
) -> None:
    html = client.get(f"/donate?currency={currency}").get_data(as_text=True)
    response = client.post(
        "/donate",
        data={
            "csrf_token": _token(html),
            "nonce": _hidden(html, "nonce"),
            "frequency": frequency,
            "currency": currency,
            "amount": amount,
            "cover_fees": "y",
            "email": "reader@example.org",
            "name": "Ada Reader",
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    path = urlsplit(response.headers["Location"]).path

    assert pay(client, path, GOOD_CARD).status_code == 303

    charge = next(e for e in capture.events if e["type"] == "charge.updated")["data"]["object"]
    transaction = sandbox_of(served).retrieve_balance_transaction(charge["balance_transaction"])
    fees = served.config["PROCESSING_FEES"][currency]
    assert transaction["currency"] == currency
    assert transaction["amount"] > gift_minor
    assert transaction["fee"] == processing_fee(
        transaction["amount"], currency, served.config["PROCESSING_FEES"]
    )
    assert (
        transaction["fee"]
        == (transaction["amount"] * fees["rate_bp"] + 5_000) // 10_000 + (fees["fixed"])
    )
    assert 0 <= transaction["net"] - gift_minor <= 1  # the least total that covers it


def test_sandbox_periods_keep_the_day_or_end_at_the_end_of_a_shorter_month() -> None:
    from datetime import UTC, datetime

    assert add_interval(datetime(2026, 1, 31, 9, tzinfo=UTC), "month") == datetime(
        2026, 2, 28, 9, tzinfo=UTC
    )
    assert add_interval(datetime(2026, 12, 15, tzinfo=UTC), "month") == datetime(
        2027, 1, 15, tzinfo=UTC
    )
    assert add_interval(datetime(2028, 2, 29, tzinfo=UTC), "year") == datetime(
        2029, 2, 28, tzinfo=UTC
    )


def test_an_unknown_sandbox_session_is_not_found(served: Flask, client: FlaskClient) -> None:
    assert client.get("/sandbox/checkout/cs_test_sbx_nothing").status_code == 404
    token = _token(client.get("/donate").get_data(as_text=True))
    unknown = client.post(
        "/sandbox/checkout/cs_test_sbx_nothing", data={"csrf_token": token, "card_number": "1"}
    )
    assert unknown.status_code == 404
    assert client.post("/sandbox/checkout/cs_test_sbx_nothing").status_code == 400  # no token
    with served.app_context(), pytest.raises(PaymentsError) as raised:
        sandbox_of(served).retrieve_checkout_session("cs_test_sbx_nothing")
    assert raised.value.kind == "not_found"


def test_the_same_idempotency_key_gives_the_same_session_and_other_params_an_error(
    served: Flask,
) -> None:
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 1500,
                    "product_data": {"name": "Donation"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "http://127.0.0.1/thanks?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1/donate",
        "customer_email": "reader@example.org",
        "submit_type": "donate",
    }
    sandbox = sandbox_of(served)
    with served.app_context():
        first = sandbox.create_checkout_session(params, idempotency_key="key-1")
        again = sandbox.create_checkout_session(dict(params), idempotency_key="key-1")
        other = sandbox.create_checkout_session(params, idempotency_key="key-2")
        with pytest.raises(PaymentsError) as raised:
            sandbox.create_checkout_session({**params, "locale": "ru"}, idempotency_key="key-1")
        db_session().commit()

        stored = sandbox.retrieve_checkout_session(first["id"])

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert raised.value.kind == "invalid"
    assert first["id"].startswith("cs_test_sbx_")
    assert stored["status"] == "open" and stored["payment_status"] == "unpaid"
    assert stored["amount_total"] == 1500 and stored["currency"] == "eur"
    assert stored["url"].endswith(f"/sandbox/checkout/{first['id']}")
    assert stored["expires_at"] - stored["created"] == 24 * 3600
    assert stored["livemode"] is False


# --- paying ---------------------------------------------------------------------------


def test_a_one_time_sandbox_gift_delivers_signed_stripe_shaped_events_and_thanks(
    served: Flask, client: FlaskClient, capture: Capture
) -> None:
    path = donate(client, amount="25")
    page = client.get(path).get_data(as_text=True)
    assert "Sandbox: no real money moves." in page
    assert "$25.00" in page
    assert "reader@example.org" in page
    assert 'href="' + served.config["PUBLIC_BASE_URL"] + "/donate?" in page  # cancel link

    response = pay(client, path, GOOD_CARD)

    assert response.status_code == 303
    session_id = session_id_of(path)
    assert response.headers["Location"].endswith(f"/donate/thanks?session_id={session_id}")
    assert capture.types == [
        "customer.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
        "charge.updated",
    ]
    for headers, body in capture.received:
        assert verify(headers, body, WEBHOOK_SECRET)
    events = {event["type"]: event for event in capture.events}
    assert {event["api_version"] for event in capture.events} == {API_VERSION}
    assert {event["livemode"] for event in capture.events} == {False}
    succeeded = events["charge.succeeded"]["data"]["object"]
    updated = events["charge.updated"]["data"]
    assert succeeded["balance_transaction"] is None
    assert updated["previous_attributes"] == {"balance_transaction": None}
    charge = updated["object"]
    assert charge["amount"] == 2500 and charge["currency"] == "usd"
    assert charge["metadata"]["frequency"] == "once"
    completed = events["checkout.session.completed"]["data"]["object"]
    assert completed["payment_status"] == "paid" and completed["status"] == "complete"
    assert completed["payment_intent"] == charge["payment_intent"]
    assert completed["customer"] == charge["customer"]
    assert completed["customer_details"]["email"] == "reader@example.org"

    sandbox = sandbox_of(served)
    transaction = sandbox.retrieve_balance_transaction(charge["balance_transaction"])
    fees = served.config["PROCESSING_FEES"]
    assert transaction["fee"] == processing_fee(2500, "usd", fees) == 103  # 72.5 up, plus 30
    assert transaction["net"] == 2500 - 103
    assert transaction["source"] == charge["id"]
    assert (transaction["type"], transaction["reporting_category"]) == ("charge", "charge")
    assert transaction["status"] == "pending"
    assert transaction["available_on"] - transaction["created"] == 2 * 86400
    assert sandbox.retrieve_charge(charge["id"])["balance_transaction"] == transaction["id"]

    thanks = client.get(response.headers["Location"])
    assert thanks.status_code == 200
    assert "Thank you!" in thanks.get_data(as_text=True)
    # A second press (the page still open in another tab) charges nothing.
    again = client.post(path, data={"csrf_token": _token(page), "card_number": GOOD_CARD})
    assert again.status_code == 303
    assert "This checkout is paid." in client.get(path).get_data(as_text=True)
    assert len(capture.received) == 5


def test_a_declined_card_shows_the_decline_sends_only_failures_and_keeps_the_session_open(
    served: Flask, client: FlaskClient, capture: Capture
) -> None:
    path = donate(client)
    session_id = session_id_of(path)

    wrong = pay(client, path, "1234 5678 9012 3456")
    declined = pay(client, path, DECLINED_CARD)

    assert wrong.status_code == 400
    assert "Use a test card" in wrong.get_data(as_text=True)
    assert declined.status_code == 402
    assert "Your card was declined." in declined.get_data(as_text=True)
    assert capture.types == ["charge.failed", "payment_intent.payment_failed"]
    failed_charge = capture.events[0]["data"]["object"]
    assert failed_charge["status"] == "failed"
    assert failed_charge["failure_code"] == "card_declined"
    stripe_session = sandbox_of(served).retrieve_checkout_session(session_id)
    assert stripe_session["status"] == "open"
    assert stripe_session["payment_status"] == "unpaid"
    assert stripe_session["payment_intent"]["status"] == "requires_payment_method"

    retried = pay(client, path, GOOD_CARD)

    assert retried.status_code == 303
    paid = sandbox_of(served).retrieve_checkout_session(session_id)
    assert paid["payment_status"] == "paid"
    assert paid["payment_intent"]["id"] == failed_charge["payment_intent"]  # the same intent
    assert paid["payment_intent"]["latest_charge"] != failed_charge["id"]


def test_a_sandbox_membership_is_created_paid_and_renews_on_command(
    served: Flask, client: FlaskClient, capture: Capture, runner: FlaskCliRunner
) -> None:
    path = donate(client, frequency="month", amount="10")
    assert "every month" in client.get(path).get_data(as_text=True)

    assert pay(client, path, GOOD_CARD).status_code == 303

    assert capture.types == [
        "customer.created",
        "customer.subscription.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
        "charge.updated",
    ]
    events = {event["type"]: event["data"]["object"] for event in capture.events}
    subscription, invoice = events["customer.subscription.created"], events["invoice.paid"]
    item = subscription["items"]["data"][0]
    assert subscription["status"] == "active"
    assert subscription["metadata"]["frequency"] == "month"
    assert item["price"]["unit_amount"] == 1000
    assert item["price"]["recurring"]["interval"] == "month"
    first_end = item["current_period_end"]
    assert 28 * 86400 <= first_end - item["current_period_start"] <= 31 * 86400
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription["id"]
    assert invoice["billing_reason"] == "subscription_create"
    assert invoice["status"] == "paid" and invoice["amount_paid"] == 1000
    payment = events["invoice_payment.paid"]
    assert payment["invoice"] == invoice["id"]
    assert payment["payment"] == {
        "type": "payment_intent",
        "payment_intent": events["payment_intent.succeeded"]["id"],
    }
    assert (payment["amount_paid"], payment["status"]) == (1000, "paid")
    completed = events["checkout.session.completed"]
    assert completed["subscription"] == subscription["id"]
    sandbox = sandbox_of(served)
    assert sandbox.list_invoice_payments(payment_intent=payment["payment"]["payment_intent"]) == [
        payment
    ]
    assert sandbox.retrieve_invoice(invoice["id"]) == invoice

    capture.received.clear()
    result = runner.invoke(main, ["sandbox", "renew", subscription["id"]])

    assert result.exit_code == 0, result.output
    assert capture.types == [
        "customer.subscription.updated",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
        "charge.updated",
    ]
    renewal = {event["type"]: event["data"] for event in capture.events}
    renewed_item = renewal["customer.subscription.updated"]["object"]["items"]["data"][0]
    assert renewed_item["current_period_start"] == first_end
    assert (
        renewal["customer.subscription.updated"]["previous_attributes"]["items"]["data"][0][
            "current_period_end"
        ]
        == first_end
    )
    renewal_invoice = renewal["invoice.paid"]["object"]
    assert renewal_invoice["billing_reason"] == "subscription_cycle"
    assert renewal_invoice["id"] != invoice["id"]
    assert renewal_invoice["parent"]["subscription_details"]["subscription"] == subscription["id"]
    assert len(sandbox.list_invoice_payments(invoice=renewal_invoice["id"])) == 1
    assert (
        sandbox.retrieve_subscription(subscription["id"])["latest_invoice"]
        == (renewal_invoice["id"])
    )
    assert all(verify(h, b, WEBHOOK_SECRET) for h, b in capture.received)

    renew_all = runner.invoke(main, ["sandbox", "renew", "--all"])
    assert renew_all.exit_code == 0, renew_all.output
    assert f"renewed {subscription['id']}" in renew_all.output


@pytest.mark.parametrize("webhook_target", ["down"], indirect=True)
def test_events_the_receiver_could_not_take_are_kept_and_sent_later(
    served: Flask,
    client: FlaskClient,
    db: Session,
    runner: FlaskCliRunner,
    capture: Capture,
    app_config: dict[str, Any],
) -> None:
    path = donate(client)

    response = pay(client, path, GOOD_CARD)

    assert response.status_code == 303  # the donor's payment is not lost
    assert len(stored_events(db, delivered=False)) == 5
    refused = runner.invoke(main, ["sandbox", "deliver"])
    assert refused.exit_code == 1
    assert "could not deliver 5 event(s)" in refused.output

    # The receiver is back (here: the same database, configured to reach it).
    back = create_app({**app_config, "SANDBOX_WEBHOOK_URL": capture.url})
    delivered = back.test_cli_runner().invoke(main, ["sandbox", "deliver"])
    back.extensions["donations.db"].dispose()

    assert delivered.exit_code == 0, delivered.output
    assert capture.types[0] == "customer.created" and len(capture.types) == 5
    assert stored_events(db, delivered=False) == []


@pytest.mark.parametrize("webhook_target", ["down"], indirect=True)
def test_renewing_with_the_receiver_down_says_so_and_exits_1(
    served: Flask, client: FlaskClient, db: Session, runner: FlaskCliRunner
) -> None:
    pay(client, donate(client, frequency="year", amount="50"), GOOD_CARD)

    result = runner.invoke(main, ["sandbox", "renew", "--all"])

    assert result.exit_code == 1
    assert "Is the dev server running?" in result.output
    assert stored_events(db, delivered=False).count("invoice.paid") == 2


@pytest.mark.parametrize("webhook_target", ["receiver"], indirect=True)
def test_a_sandbox_donation_reaches_the_ledger_export_with_its_fee_and_net(
    served: Flask, client: FlaskClient, db: Session, runner: FlaskCliRunner
) -> None:
    from webhooks.inbox import StripeEvent

    pay(client, donate(client, amount="25"), GOOD_CARD)

    stored = db.scalars(select(StripeEvent.type)).all()
    db.commit()  # end the transaction: on SQLite it holds the write lock
    assert sorted(stored) == sorted(
        [
            "customer.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed",
            "charge.updated",
        ]
    )
    assert stored_events(db, delivered=False) == []

    worked = runner.invoke(main, ["worker", "--once"])
    exported = runner.invoke(main, ["ledger", "export"])

    assert worked.exit_code == 0, worked.output
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["kind"], r["currency"], r["amount"], r["fee"], r["net"]) for r in rows] == [
        ("donation", "usd", "25.00", "1.03", "23.97")
    ]
    assert rows[0]["donor_email"] == "reader@example.org"
    assert rows[0]["frequency"] == "once"
    assert rows[0]["stripe_id"].startswith(("ch_sbx_", "txn_sbx_"))
