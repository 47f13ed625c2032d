"""`donations stripe sync` against localstripe (PyPI, on loopback): payments, a
membership and a refund are made there with its webhooks dropped on purpose
(no endpoint is registered, so not one event reaches the app), and one sync
recovers them from its lists; a second changes nothing.

What localstripe lacks, and how the sync copes (it degrades, never crashes):
- no invoice payments and no disputes list (404): those lists are named under
  `unlisted` in the report, and the rest goes on;
- `created[gte]` with `created[lt]` on its charge list (one bound only) and no
  `created` at all on its other lists (its subscription list answers 500, a
  TypeError inside it, which is indistinguishable from an outage): so the
  recovery runs over an open window (no --since/--until, no `created`
  filter), and a windowed sync ends with its one-line error and exit 1, as for
  any outage, never a traceback;
- no fees (every balance transaction's fee is 0) and manual payouts only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ledger
from app.cli import main
from app.db import Database
from tests.integration.test_finance import login
from tests.servers import localstripe
from webhooks.inbox import StripeEvent

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
        "STRIPE_SYNC_REQUESTS_PER_SECOND": 0,
        "STRIPE_SYNC_MAX_RETRIES": 0,
    }


def call(base: str, path: str, **data: Any) -> dict[str, Any]:
    response = requests.post(f"{base}{path}", auth=AUTH, data=data, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def make_history(base: str) -> None:
    """Two gifts, one of them partly refunded, and a monthly membership."""
    customer = call(base, "/v1/customers", email="reader@example.org", name="Lena")
    method = call(
        base,
        "/v1/payment_methods",
        type="card",
        **{
            "card[number]": "4242424242424242",
            "card[exp_month]": 12,
            "card[exp_year]": 2030,
            "card[cvc]": "123",
        },
    )
    call(base, f"/v1/payment_methods/{method['id']}/attach", customer=customer["id"])
    for amount in (2500, 4000):
        call(
            base,
            "/v1/payment_intents",
            amount=amount,
            currency="usd",
            customer=customer["id"],
            payment_method=method["id"],
            confirm="true",
        )
    charges = requests.get(f"{base}/v1/charges", auth=AUTH, timeout=10).json()["data"]
    gift = next(c for c in charges if c["amount"] == 4000)
    call(base, "/v1/refunds", charge=gift["id"], amount=1500)
    product = call(base, "/v1/products", name="Membership", type="service")
    plan = call(
        base, "/v1/plans", amount=1000, currency="usd", interval="month", product=product["id"]
    )
    call(
        base,
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": method["id"]},
    )
    call(base, "/v1/subscriptions", customer=customer["id"], **{"items[0][plan]": plan["id"]})


def ledger_rows(runner: FlaskCliRunner) -> list[tuple[str, str, str]]:
    exported = runner.invoke(main, ["ledger", "export"])
    assert exported.exit_code == 0, exported.output
    rows = csv.DictReader(io.StringIO(exported.output))
    return sorted((r["kind"], r["amount"], r["donor_email"]) for r in rows)


def test_a_sync_recovers_from_localstripes_lists_what_its_dropped_webhooks_never_said(
    app: Flask, runner: FlaskCliRunner, db: Session, stripe_base: str
) -> None:
    make_history(stripe_base)

    result = runner.invoke(main, ["stripe", "sync", "--json"])

    assert db.scalars(select(StripeEvent)).first() is None  # not one webhook came
    assert result.exit_code in (0, 1), (result.output, result.exception)
    report = json.loads(result.stdout.splitlines()[-1])
    assert ledger_rows(runner) == [
        ("donation", "25.00", "reader@example.org"),
        ("donation", "40.00", "reader@example.org"),
        ("membership_payment", "10.00", "reader@example.org"),
        ("refund", "-15.00", "reader@example.org"),
    ]
    assert {item["list"] for item in report["unlisted"]} == {"invoice_payments", "disputes"}
    assert report["missing_in_ledger"] == [] and report["mismatches"] == []
    usd = report["currencies"]["usd"]
    assert usd["stripe"] == usd["ledger"] == {"gross": "75.00", "fees": "0.00", "net": "60.00"}
    verified = runner.invoke(main, ["ledger", "verify"])
    assert verified.exit_code == 0, verified.output
    page = login(app, db, "finance").get("/ledger/reconciliation").get_data(as_text=True)
    assert "Lists Stripe would not give" in page and "disputes" in page

    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        before = ledger.entries_by_key(session)
    again = runner.invoke(main, ["stripe", "sync", "--json"])
    assert again.exit_code == result.exit_code, again.output
    with database.session() as session:
        assert ledger.entries_by_key(session) == before

    windowed = runner.invoke(main, ["stripe", "sync", "--since", "2020-01-01"])
    assert windowed.exit_code == 1
    assert "error: Stripe subscriptions list failed" in windowed.output
    assert windowed.exception is None or isinstance(windowed.exception, SystemExit)
