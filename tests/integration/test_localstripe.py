"""Against localstripe (a stateful fake Stripe server from PyPI, on loopback):
a payment and a membership made there reach the running app as signed
webhooks in localstripe's 2017-08-15 shapes, and land in the ledger."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli import main
from tests.servers import live_app, localstripe
from webhooks.inbox import StripeEvent

SECRET = "whsec_localstripe_suite"
AUTH = ("sk_test_localstripe", "")


@pytest.fixture
def stripe_base() -> Iterator[str]:
    with localstripe() as base:
        yield base


@pytest.fixture
def app_config(app_config: dict[str, Any], stripe_base: str) -> dict[str, Any]:
    return {
        **app_config,
        "STRIPE_SECRET_KEY": AUTH[0],
        "STRIPE_API_BASE": stripe_base,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_WEBHOOK_SECRETS": [SECRET],
    }


def call(base: str, path: str, **data: Any) -> dict[str, Any]:
    response = requests.post(f"{base}{path}", auth=AUTH, data=data, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for_events(db: Session, types: list[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        db.rollback()
        seen = [e.type for e in db.scalars(select(StripeEvent))]
        if all(seen.count(t) >= types.count(t) for t in set(types)):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"events not delivered: wanted {types}, have {seen}")
        time.sleep(0.2)


def test_a_payment_and_a_membership_made_in_localstripe_land_in_the_ledger(
    app: Flask, runner: FlaskCliRunner, db: Session, stripe_base: str
) -> None:
    with live_app(app) as app_url:
        registered = requests.post(
            f"{stripe_base}/_config/webhooks/app",
            data={"url": f"{app_url}/webhooks/stripe", "secret": SECRET},
            timeout=10,
        )
        assert registered.ok
        customer = call(stripe_base, "/v1/customers", email="member@example.org", name="Lena")
        method = call(
            stripe_base,
            "/v1/payment_methods",
            type="card",
            **{
                "card[number]": "4242424242424242",
                "card[exp_month]": 12,
                "card[exp_year]": 2030,
                "card[cvc]": "123",
            },
        )
        call(stripe_base, f"/v1/payment_methods/{method['id']}/attach", customer=customer["id"])
        call(
            stripe_base,
            "/v1/payment_intents",
            amount=2500,
            currency="usd",
            customer=customer["id"],
            payment_method=method["id"],
            confirm="true",
        )
        product = call(stripe_base, "/v1/products", name="Membership", type="service")
        plan = call(
            stripe_base,
            "/v1/plans",
            amount=1000,
            currency="usd",
            interval="month",
            product=product["id"],
        )
        call(
            stripe_base,
            f"/v1/customers/{customer['id']}",
            **{"invoice_settings[default_payment_method]": method["id"]},
        )
        call(
            stripe_base,
            "/v1/subscriptions",
            customer=customer["id"],
            **{"items[0][plan]": plan["id"]},
        )

        wait_for_events(
            db,
            [
                "payment_intent.succeeded",
                "payment_intent.succeeded",
                "invoice.payment_succeeded",
                "customer.subscription.created",
            ],
        )
        worked = runner.invoke(main, ["worker", "--once"])
        assert worked.exit_code == 0, worked.output

    db.rollback()
    states = {e.type: e.status for e in db.scalars(select(StripeEvent))}
    assert states["payment_intent.succeeded"] == "processed"
    assert states["invoice.payment_succeeded"] == "processed"

    exported = runner.invoke(main, ["ledger", "export"])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    payments = sorted((r["kind"], r["amount"], r["currency"], r["donor_email"]) for r in rows)
    assert payments == [
        ("donation", "25.00", "usd", "member@example.org"),
        ("membership_payment", "10.00", "usd", "member@example.org"),
    ]
    assert {r["frequency"] for r in rows if r["kind"] == "membership_payment"} == {"month"}

    verified = runner.invoke(main, ["ledger", "verify"])
    assert verified.exit_code == 0, verified.output
