"""The donation form and Stripe Checkout: what Stripe receives for each kind of
gift, idempotency, bad input, Stripe failures and the thanks page.

Stripe is stubbed at HTTP (`responses`); the database is real (SQLite and
PostgreSQL). CSRF is on, as in production: tokens come from the rendered form.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.donate.checkout import Gift, StartedCheckout, checkout_id_for, record_checkout
from app.donate.models import Checkout
from app.donate.statements import CoreStatements
from app.donors import Donor, StripeCustomer
from tests.stripe_helpers import stripe_object

SESSIONS_URL = "https://api.stripe.com/v1/checkout/sessions"
BASE = "http://donate.test"


def checkout_session(**fields: Any) -> dict[str, Any]:
    fields.setdefault("id", "cs_test_a1b2c3")
    fields.setdefault("url", "https://checkout.stripe.com/c/pay/cs_test_a1b2c3")
    fields.setdefault("livemode", False)
    fields.setdefault("expires_at", int(time.time()) + 86400)
    return stripe_object("checkout.session", **fields)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    assert match, f"no hidden field {name}"
    return match.group(1)


def form_data(client: FlaskClient, query: str = "", **fields: Any) -> dict[str, Any]:
    """A valid submission as the rendered form would send it, with overrides."""
    html = client.get(f"/donate{query}").get_data(as_text=True)
    data: dict[str, Any] = {
        "csrf_token": hidden(html, "csrf_token"),
        "nonce": hidden(html, "nonce"),
        "frequency": "once",
        "currency": "usd",
        "amount": "25",
        "email": "Reader@Example.org",
        "name": "Ada Reader",
    }
    for name in ("campaign", "utm_source", "utm_medium", "utm_content", "utm_term"):
        value = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html)
        if value and value.group(1):
            data[name] = value.group(1)
    data.update({k: v for k, v in fields.items() if v is not None})
    for key in [k for k, v in fields.items() if v is None]:
        data.pop(key, None)
    return data


def sent_params(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def count(db: Session, model: type) -> int:
    db.rollback()  # a fresh snapshot: see what the app committed since
    return db.scalar(select(func.count()).select_from(model)) or 0


# --- what Stripe receives -------------------------------------------------------------


def test_a_one_time_gift_creates_a_payment_mode_session_with_our_ids(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    response = client.post("/donate", data=form_data(client))

    assert response.status_code == 303
    assert response.headers["Location"] == "https://checkout.stripe.com/c/pay/cs_test_a1b2c3"
    checkout = db.scalars(select(Checkout)).one()
    assert len(stripe_http.calls) == 1
    call = stripe_http.calls[0]
    assert call.request.headers["Stripe-Version"] == "2026-10-28.endive"
    assert call.request.headers["Idempotency-Key"] == f"checkout-session-create:{checkout.id}"
    assert sent_params(call) == {
        "mode": "payment",
        "submit_type": "donate",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "Donation to The Independent Newsroom",
        "line_items[0][quantity]": "1",
        "customer_email": "Reader@Example.org",
        "customer_creation": "always",
        "client_reference_id": checkout.id,
        "metadata[checkout_id]": checkout.id,
        "metadata[frequency]": "once",
        "payment_intent_data[metadata][checkout_id]": checkout.id,
        "payment_intent_data[metadata][frequency]": "once",
        "success_url": f"{BASE}/donate/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{BASE}/donate?amount=25.00&currency=usd&frequency=once",
        "locale": "en",
    }
    assert (checkout.amount_minor, checkout.total_minor, checkout.currency) == (2500, 2500, "usd")
    assert checkout.status == "open"
    assert checkout.stripe_checkout_session_id == "cs_test_a1b2c3"
    assert checkout.donor.email == "reader@example.org"


@pytest.mark.parametrize("frequency", ["month", "year"])
def test_a_recurring_gift_creates_a_subscription_with_recurring_inline_price(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, frequency: str
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    response = client.post(
        "/donate", data=form_data(client, frequency=frequency, currency="eur", amount="10")
    )

    assert response.status_code == 303
    checkout = db.scalars(select(Checkout)).one()
    assert sent_params(stripe_http.calls[0]) == {
        "mode": "subscription",
        "line_items[0][price_data][currency]": "eur",
        "line_items[0][price_data][unit_amount]": "1000",
        "line_items[0][price_data][recurring][interval]": frequency,
        "line_items[0][price_data][product_data][name]": "Membership",
        "line_items[0][quantity]": "1",
        "customer_email": "Reader@Example.org",
        "client_reference_id": checkout.id,
        "metadata[checkout_id]": checkout.id,
        "metadata[frequency]": frequency,
        "subscription_data[metadata][checkout_id]": checkout.id,
        "subscription_data[metadata][frequency]": frequency,
        "success_url": f"{BASE}/donate/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{BASE}/donate?amount=10.00&currency=eur&frequency={frequency}",
        "locale": "en",
    }
    assert checkout.frequency == frequency


@pytest.mark.settings(MEMBERSHIP_PRODUCT="prod_Membership123")
def test_a_membership_uses_the_configured_product(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    client.post("/donate", data=form_data(client, frequency="month"))
    params = sent_params(stripe_http.calls[0])
    assert params["line_items[0][price_data][product]"] == "prod_Membership123"
    assert "line_items[0][price_data][product_data][name]" not in params


def test_covering_the_fee_adds_an_exact_second_line_item(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    client.post("/donate", data=form_data(client, amount="10", cover_fees="y", frequency="month"))

    params = sent_params(stripe_http.calls[0])
    # ceil((1000 + 30) / (1 - 0.029)) = 1061: the newsroom keeps 10.00 after 2.9% + 0.30
    assert params["line_items[1][price_data][unit_amount]"] == "61"
    assert params["line_items[1][price_data][recurring][interval]"] == "month"
    assert (
        params["line_items[1][price_data][product_data][name]"] == "Processing fee, covered by you"
    )
    checkout = db.scalars(select(Checkout)).one()
    assert (checkout.amount_minor, checkout.fee_cover_minor, checkout.total_minor) == (
        1000,
        61,
        1061,
    )
    assert checkout.cover_fees is True


@pytest.mark.parametrize("frequency", ["once", "month"])
def test_a_gift_with_a_known_email_never_joins_that_donors_stripe_customer(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, frequency: str
) -> None:
    # Anyone can type a known donor's email: it must not attach the gift (and
    # the card) to that donor's Stripe customer. Checkout makes a new customer;
    # the ledger joins the donor by normalised email.
    donor = Donor(email="reader@example.org", name="Ada")
    db.add(donor)
    db.flush()
    db.add(StripeCustomer(stripe_customer_id="cus_Returning1", donor_id=donor.id, livemode=False))
    db.commit()
    stripe_http.post(SESSIONS_URL, json=checkout_session())

    response = client.post(
        "/donate", data=form_data(client, email=" READER@example.org ", frequency=frequency)
    )

    assert response.status_code == 303
    params = sent_params(stripe_http.calls[0])
    assert not any(key.startswith("customer[") or key == "customer" for key in params)
    assert params["customer_email"] == "READER@example.org"
    if frequency == "once":
        assert params["customer_creation"] == "always"
    else:
        assert "customer_creation" not in params  # subscriptions always make one
    checkout = db.scalars(select(Checkout)).one()
    assert checkout.stripe_customer_id is None
    assert checkout.donor_id == donor.id
    assert count(db, Donor) == 1


def test_campaign_and_utm_from_the_link_travel_to_stripe_and_the_record(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    query = (
        "?campaign=spring-appeal&utm_source=newsletter&utm_medium=email&utm_content=top&utm_term=b"
    )
    data = form_data(client, query)
    assert data["campaign"] == "spring-appeal"
    client.post("/donate", data=data)

    params = sent_params(stripe_http.calls[0])
    for key, value in {
        "campaign": "spring-appeal",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_content": "top",
        "utm_term": "b",
    }.items():
        assert params[f"metadata[{key}]"] == value
        assert params[f"payment_intent_data[metadata][{key}]"] == value
    cancel = dict(parse_qsl(urlsplit(params["cancel_url"]).query))
    assert cancel["campaign"] == "spring-appeal" and cancel["utm_source"] == "newsletter"
    checkout = db.scalars(select(Checkout)).one()
    assert (checkout.campaign, checkout.utm_source, checkout.utm_term) == (
        "spring-appeal",
        "newsletter",
        "b",
    )


@pytest.mark.parametrize(
    ("typed", "minor"), [("1,000", 100_000), ("1,000.50", 100_050), ("2,500", 250_000)]
)
def test_an_amount_with_thousands_separators_is_charged_as_typed(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, typed: str, minor: int
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())

    response = client.post("/donate", data=form_data(client, amount=typed))

    assert response.status_code == 303
    assert sent_params(stripe_http.calls[0])["line_items[0][price_data][unit_amount]"] == str(minor)
    assert db.scalars(select(Checkout.amount_minor)).one() == minor


@pytest.mark.settings(LANGUAGES=["en", "ru"])
@pytest.mark.parametrize("typed", ["1 000,50", "1\u00a0000,50", "1\u202f000,50", "1000,5"])
def test_a_russian_page_reads_russian_numbers(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, typed: str
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    russian = {"Accept-Language": "ru"}
    html = client.get("/donate", headers=russian).get_data(as_text=True)
    assert 'data-decimal=","' in html

    response = client.post(
        "/donate",
        data={
            **form_data(client),
            "csrf_token": hidden(html, "csrf_token"),
            "nonce": hidden(html, "nonce"),
            "currency": "eur",
            "amount": typed,
        },
        headers=russian,
    )

    assert response.status_code == 303
    assert db.scalars(select(Checkout.amount_minor)).one() == 100_050


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1,00", "Enter the amount as in 1,000.50 or 25"),
        ("1.000,5", "Enter the amount as in 1,000.50 or 25"),
        ("1,000.5,0", "Enter the amount as in 1,000.50 or 25"),
        ("10,0000", "Enter the amount as in 1,000.50 or 25"),
        ("10.000", "Use at most 2 decimal places for USD"),
    ],
)
def test_an_ambiguous_amount_is_a_400_on_the_amount_field_and_never_another_amount(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, typed: str, message: str
) -> None:
    response = client.post("/donate", data=form_data(client, amount=typed))

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert re.search(r'id="amount-error"[^>]*>[^<]*' + re.escape(message.split(" 1,")[0]), html)
    assert 'value="' + typed + '"' in html  # kept as typed, to correct
    assert "Give once" in html  # the button names no amount
    assert len(stripe_http.calls) == 0
    assert count(db, Checkout) == 0


def test_a_zero_decimal_currency_is_sent_in_whole_units(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    response = client.post("/donate", data=form_data(client, currency="jpy", amount="3000"))
    assert response.status_code == 303
    assert sent_params(stripe_http.calls[0])["line_items[0][price_data][unit_amount]"] == "3000"


def test_the_optional_choices_are_kept_on_the_record_and_not_sent_to_stripe(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = form_data(
        client,
        dedication_kind="memory",
        dedication_name="Anna Politkovskaya",
        anonymous="y",
        comment="For the reporters.",
    )
    client.post("/donate", data=data)
    checkout = db.scalars(select(Checkout)).one()
    assert (checkout.dedication_kind, checkout.dedication_name) == ("memory", "Anna Politkovskaya")
    assert checkout.anonymous is True and checkout.comment == "For the reporters."
    assert "Politkovskaya" not in stripe_http.calls[0].request.body


# --- one submission, one session ------------------------------------------------------


def test_the_same_submission_twice_makes_one_row_and_one_session(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = form_data(client)
    first = client.post("/donate", data=data)
    second = client.post("/donate", data=data)

    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert len(stripe_http.calls) == 1
    assert count(db, Checkout) == 1


def test_a_checkout_is_one_statement_before_stripe_and_one_after(
    app: Flask, client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    # The look-up for a repeated submission, then the donor and the checkout
    # written together: one statement on PostgreSQL (a CTE, in autocommit, on
    # a raw psycopg cursor), two on SQLite, whose CTEs cannot write. No ORM
    # session, no pre-ping. PostgreSQL's are seen by the cursors psycopg
    # makes for the pool's connections; SQLite's by SQLAlchemy's events.
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    database = app.extensions["donations.db"]
    data = form_data(client)
    statements: list[str] = []

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query).split()[0])
            return super().execute(query, *args, **kwargs)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0])

    def recording(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.cursor_factory = Recording

    def plain(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.cursor_factory = psycopg.Cursor

    engines = {database.engine, database.single_statement_engine}
    listeners = (
        [("checkout", recording), ("checkin", plain)]
        if database.dialect == "postgresql"
        else [("before_cursor_execute", record)]
    )
    for engine in engines:
        for name, listener in listeners:
            event.listen(engine.pool if name != "before_cursor_execute" else engine, name, listener)
    try:
        response = client.post("/donate", data=data)
    finally:
        for engine in engines:
            for name, listener in listeners:
                target = engine.pool if name != "before_cursor_execute" else engine
                event.remove(target, name, listener)

    assert response.status_code == 303
    expected = {
        "postgresql": ["SELECT", "WITH"],
        "sqlite": ["BEGIN", "SELECT", "BEGIN", "INSERT", "INSERT"],  # BEGIN IMMEDIATE: app.db
    }
    assert statements == expected[database.dialect]
    assert count(db, Checkout) == 1  # committed: seen from another connection


@pytest.mark.parametrize(("known_name", "kept"), [(None, "Ada Reader"), ("Ada", "Ada")])
def test_a_known_donor_gets_the_gifts_name_only_when_they_had_none(
    client: FlaskClient,
    stripe_http: responses.RequestsMock,
    db: Session,
    known_name: str | None,
    kept: str,
) -> None:
    db.add(Donor(email="reader@example.org", name=known_name))
    db.commit()
    stripe_http.post(SESSIONS_URL, json=checkout_session())

    response = client.post("/donate", data=form_data(client, email="Reader@Example.org"))

    assert response.status_code == 303
    db.rollback()
    donor = db.scalars(select(Donor)).one()
    assert donor.name == kept
    assert db.scalars(select(Checkout)).one().donor_id == donor.id


def test_the_same_checkout_recorded_twice_at_once_is_one_row(app: Flask, db: Session) -> None:
    # Two requests for one submission that both passed the look-up: Stripe gave
    # both the same session (the same idempotency key); the second write finds
    # the first's row instead of failing.
    gift = Gift(
        nonce="n" * 32,
        email="Reader@Example.org",
        name="Ada Reader",
        frequency="once",
        currency="usd",
        amount_minor=2500,
        fee_cover_minor=0,
        dedication_kind=None,
        dedication_name=None,
        anonymous=False,
        comment=None,
        locale="en",
        campaign=None,
        utm_source=None,
        utm_medium=None,
        utm_content=None,
        utm_term=None,
    )
    checkout_id = checkout_id_for(gift)
    created = checkout_session()
    database = app.extensions["donations.db"]
    found = []
    for _ in range(2):
        with database.engine.connect() as connection:
            statements = CoreStatements(connection)
            found.append(record_checkout(statements, gift, checkout_id, created, livemode=False))
            connection.commit()

    assert found[0] == found[1] == StartedCheckout(checkout_id, created["url"])
    assert count(db, Checkout) == 1
    assert count(db, Donor) == 1
    checkout = db.get(Checkout, checkout_id)
    assert checkout is not None and checkout.email == "reader@example.org"


def test_a_checkout_starts_after_the_database_dropped_the_pools_connections(
    app: Flask, client: FlaskClient, stripe_http: responses.RequestsMock, db: Session, db_url: str
) -> None:
    # The checkout's statements run without a pre-ping: a connection the
    # database closed (a restart, an idle timeout) fails its statement, which
    # is then run once more on a fresh connection.
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    stripe_http.post(
        SESSIONS_URL,
        json=checkout_session(
            id="cs_test_other", url="https://checkout.stripe.com/c/pay/cs_test_other"
        ),
    )
    assert client.post("/donate", data=form_data(client)).status_code == 303
    if db_url.startswith("postgresql"):
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    response = client.post("/donate", data=form_data(client, amount="30"))

    assert response.status_code == 303
    assert response.headers["Location"] == "https://checkout.stripe.com/c/pay/cs_test_other"
    assert count(db, Checkout) == 2


def test_a_retry_after_a_lost_answer_sends_the_same_idempotency_key(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, body=requests.ConnectionError("connection reset"))
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = form_data(client)

    failed = client.post("/donate", data=data)
    assert failed.status_code == 503
    assert count(db, Checkout) == 0
    retried = client.post("/donate", data=data)

    assert retried.status_code == 303
    keys = [call.request.headers["Idempotency-Key"] for call in stripe_http.calls]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert count(db, Checkout) == 1


def test_a_changed_choice_with_the_same_form_is_a_new_session(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    stripe_http.post(
        SESSIONS_URL,
        json=checkout_session(
            id="cs_test_other", url="https://checkout.stripe.com/c/pay/cs_test_other"
        ),
    )
    data = form_data(client)
    client.post("/donate", data=data)
    client.post("/donate", data={**data, "amount": "30"})

    keys = {call.request.headers["Idempotency-Key"] for call in stripe_http.calls}
    assert len(keys) == 2
    assert count(db, Checkout) == 2


# --- bad input ------------------------------------------------------------------------

BAD_INPUT = [
    ("negative", {"amount": "-5"}, "Enter an amount in digits"),
    ("zero", {"amount": "0"}, "Enter an amount greater than zero"),
    ("too many decimals", {"amount": "10.001"}, "Use at most 2 decimal places for USD"),
    ("decimals in yen", {"currency": "jpy", "amount": "1000.5"}, "JPY amounts are whole numbers"),
    ("below the minimum", {"amount": "0.50"}, "The smallest gift is $1.00"),
    ("above the maximum", {"amount": "10000.01"}, "The largest gift online is $10,000.00"),
    ("non-numeric", {"amount": "ten"}, "Enter an amount in digits"),
    ("arabic-indic digits", {"amount": "\u0661\u0660"}, "Enter an amount in digits"),
    ("full-width digits", {"amount": "\uff11\uff10"}, "Enter an amount in digits"),
    ("no amount", {"amount": None}, "Choose or enter an amount"),
    ("unknown currency", {"currency": "xyz"}, "Choose one of the currencies offered"),
    ("unknown frequency", {"frequency": "weekly"}, "Choose once, monthly or annually"),
    ("malformed email", {"email": "reader@@example"}, "Enter a valid email address"),
    ("missing email", {"email": ""}, "Enter your email address"),
    ("missing name", {"name": "  "}, "Enter your name"),
    ("oversized name", {"name": "n" * 201}, "Use at most 200 characters"),
    ("oversized email", {"email": "a" * 250 + "@example.org"}, "That email address is too long"),
    ("oversized comment", {"comment": "c" * 1001}, "Use at most 1000 characters"),
    ("oversized campaign", {"campaign": "c" * 101}, "Please correct the marked fields"),
    ("dedication without a name", {"dedication_kind": "honour"}, "Enter the name of the person"),
    (
        "unknown dedication",
        {"dedication_kind": "rivalry", "dedication_name": "X"},
        "Please correct",
    ),
    ("missing nonce", {"nonce": None}, "This form is incomplete"),
    ("missing CSRF token", {"csrf_token": None}, "This form had expired"),
    ("forged CSRF token", {"csrf_token": "forged"}, "This form had expired"),
]


@pytest.mark.parametrize(("case", "fields", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_400_with_a_message_and_changes_nothing(
    client: FlaskClient,
    stripe_http: responses.RequestsMock,
    db: Session,
    case: str,
    fields: dict[str, Any],
    message: str,
) -> None:
    response = client.post("/donate", data=form_data(client, **fields))

    assert response.status_code == 400, case
    html = response.get_data(as_text=True)
    assert message in html
    assert 'id="donate-form"' in html
    assert len(stripe_http.calls) == 0
    assert count(db, Checkout) == 0
    assert count(db, Donor) == 0


def test_a_stale_csrf_token_is_a_400_with_the_form_filled_in(
    app: Flask, client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    data = form_data(client)
    with client.session_transaction() as flask_session:
        raw = flask_session["csrf_token"]

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    serializer = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=TwoHoursAgo)
    data["csrf_token"] = serializer.dumps(raw)

    response = client.post("/donate", data=data)

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form had expired" in html
    assert 'value="Ada Reader"' in html
    assert len(stripe_http.calls) == 0
    assert count(db, Checkout) == 0


def test_a_body_over_the_limit_is_refused(client: FlaskClient, db: Session) -> None:
    response = client.post("/donate", data={"comment": "x" * (1024 * 1024 + 1)})
    assert response.status_code == 413
    assert count(db, Checkout) == 0


# --- Stripe failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stub", "status"),
    [
        (
            {"status": 429, "json": {"error": {"type": "rate_limit_error", "message": "Too many"}}},
            503,
        ),
        ({"status": 500, "json": {"error": {"type": "api_error", "message": "Oops"}}}, 503),
        ({"body": requests.Timeout("read timed out")}, 503),
        ({"body": requests.ConnectionError("refused")}, 503),
        (
            {"status": 400, "json": {"error": {"type": "invalid_request_error", "message": "bad"}}},
            502,
        ),
        (
            {"status": 401, "json": {"error": {"type": "invalid_request_error", "message": "key"}}},
            502,
        ),
    ],
    ids=["rate-limited", "server-error", "timeout", "network", "invalid", "auth"],
)
def test_stripe_trouble_is_a_friendly_page_and_leaves_no_record(
    client: FlaskClient,
    stripe_http: responses.RequestsMock,
    db: Session,
    caplog: pytest.LogCaptureFixture,
    stub: dict[str, Any],
    status: int,
) -> None:
    stripe_http.post(SESSIONS_URL, **stub)
    caplog.set_level(logging.DEBUG)

    response = client.post("/donate", data=form_data(client))

    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert "We could not reach our payment provider" in html
    assert "Traceback" not in html
    assert 'value="Ada Reader"' in html  # their details are still there to try again
    assert count(db, Checkout) == 0
    assert count(db, Donor) == 0
    assert "example.org" not in caplog.text.lower()
    assert "Ada Reader" not in caplog.text


@pytest.mark.settings(STRIPE_SECRET_KEY=None, SANDBOX_ENABLED=False)
def test_without_payments_configured_the_form_validates_and_says_so(
    client: FlaskClient, db: Session
) -> None:
    bad = client.post("/donate", data=form_data(client, amount="-1"))
    assert bad.status_code == 400

    response = client.post("/donate", data=form_data(client))
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert "Payments are not configured on this site yet" in html
    assert "STRIPE_SECRET_KEY" in html
    assert count(db, Checkout) == 0


# --- the form itself ----------------------------------------------------------------------


def test_the_link_pre_fills_amount_currency_frequency_and_button(client: FlaskClient) -> None:
    html = client.get("/donate?amount=10&currency=eur&frequency=month").get_data(as_text=True)
    assert '<option value="eur" selected>' in html
    assert 'name="frequency" value="month" checked' in html
    assert 'name="preset" value="10.00" checked' in html
    assert "Give €10 every month" in html


def test_a_custom_amount_from_the_link_fills_the_other_amount_field(client: FlaskClient) -> None:
    html = client.get("/donate?amount=17.5&currency=usd&frequency=year").get_data(as_text=True)
    assert 'id="amount" name="amount" value="17.50"' in html
    assert "Give $17.50 every year" in html


def test_unusable_link_values_fall_back_to_defaults(client: FlaskClient) -> None:
    response = client.get("/donate?amount=abc&currency=zzz&frequency=daily")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<option value="usd" selected>' in html
    assert 'name="frequency" value="once" checked' in html


def test_every_visible_field_has_a_label(client: FlaskClient) -> None:
    html = client.get("/donate").get_data(as_text=True)
    for field_id in ("currency", "amount", "email", "name", "dedication_name", "comment"):
        assert f'for="{field_id}"' in html
    assert "<script" in html and "donate.js" in html  # enhancement only; the form is plain HTML


# --- thanks page ----------------------------------------------------------------------------


def make_checkout(client: FlaskClient, stripe_http: responses.RequestsMock, **fields: Any) -> str:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    assert client.post("/donate", data=form_data(client, **fields)).status_code == 303
    return "cs_test_a1b2c3"


@pytest.mark.parametrize(
    ("session_fields", "text"),
    [
        ({"status": "complete", "payment_status": "paid"}, "went through"),
        ({"status": "complete", "payment_status": "unpaid"}, "is processing"),
        ({"status": "open", "payment_status": "unpaid"}, "has not gone through"),
        ({"status": "expired", "payment_status": "unpaid"}, "has not gone through"),
    ],
    ids=["paid", "processing", "open", "expired"],
)
def test_the_thanks_page_tells_the_real_state_from_stripe(
    client: FlaskClient,
    stripe_http: responses.RequestsMock,
    session_fields: dict[str, Any],
    text: str,
) -> None:
    session_id = make_checkout(client, stripe_http, frequency="month", amount="10", currency="eur")
    stripe_http.get(
        f"{SESSIONS_URL}/{session_id}",
        json=checkout_session(
            amount_total=1000, currency="eur", mode="subscription", **session_fields
        ),
    )
    response = client.get(f"/donate/thanks?session_id={session_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert text in html
    assert "€10.00" in html and "every month" in html
    if "went through" in text or "processing" in text:
        assert 'href="/manage"' in html  # where a member cancels or changes


def test_an_unknown_or_foreign_session_is_a_404_without_asking_stripe(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    assert client.get("/donate/thanks?session_id=cs_test_notours").status_code == 404
    assert client.get("/donate/thanks?session_id=../../etc").status_code == 404
    assert client.get("/donate/thanks").status_code == 404
    assert len(stripe_http.calls) == 0


def test_a_session_stripe_no_longer_knows_is_a_404(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    session_id = make_checkout(client, stripe_http)
    stripe_http.get(
        f"{SESSIONS_URL}/{session_id}",
        status=404,
        json={"error": {"type": "invalid_request_error", "code": "resource_missing"}},
    )
    assert client.get(f"/donate/thanks?session_id={session_id}").status_code == 404


def test_the_thanks_page_survives_stripe_being_down(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    session_id = make_checkout(client, stripe_http)
    stripe_http.get(f"{SESSIONS_URL}/{session_id}", body=requests.ConnectionError("down"))
    response = client.get(f"/donate/thanks?session_id={session_id}")
    assert response.status_code == 503
    assert "reload this page" in response.get_data(as_text=True)
