"""Stripe events applied to the ledger and records through
`webhooks.handlers.apply_event`, as the worker does (one transaction each),
with Stripe's look-ups stubbed at HTTP. Every scenario is applied twice (the
second time changes nothing) and ends with `verify` finding no problem."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import ledger
from app.db import Base, Database
from app.donate.models import Checkout
from app.donors import Donor, StripeCustomer, attach_customer, find_or_create_donor
from app.ledger.records import Dispute, Membership, Payment, Payout, Refund
from app.payments import PaymentsError
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION, make_event
from webhooks.handlers import apply_event
from webhooks.handlers.common import known_donor


@pytest.fixture
def stripe() -> StripeApi:
    return StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """The migrated test database (both backends), without the web app."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def db(database: Database) -> Iterator[Session]:
    session = database.session(immediate=False)  # reads between steps, holds no write lock
    yield session
    session.close()


def apply_all(database: Database, events: list[dict[str, Any]], stripe: StripeApi) -> None:
    for event in events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()


def run(
    database: Database,
    scenario: ef.Scenario,
    stripe: StripeApi,
    mock: responses.RequestsMock,
    *,
    twice: bool = True,
) -> dict[str, Any]:
    """Apply the scenario (twice by default) and check the ledger is the same
    after the second pass and sound."""
    scenario.stub(mock)
    apply_all(database, scenario.events, stripe)
    with database.session() as session:
        first = ledger.entries_by_key(session)
        rows = list(ledger.export_rows(session))
    if twice:
        apply_all(database, scenario.events, stripe)
    with database.session() as session:
        assert ledger.entries_by_key(session) == first
        assert list(ledger.export_rows(session)) == rows
        assert ledger.verify(session) == []
    return first


def rows_of(database: Database) -> list[dict[str, str]]:
    with database.session() as session:
        return [
            dict(zip(ledger.CSV_COLUMNS, row, strict=True)) for row in ledger.export_rows(session)
        ]


def add_checkout(
    session: Session,
    checkout_id: str,
    email: str,
    *,
    frequency: str = "once",
    amount: int = 2500,
    session_id: str | None = None,
    campaign: str | None = "autumn",
) -> Checkout:
    donor = find_or_create_donor(session, email, "Ada Reader")
    checkout = Checkout(
        id=checkout_id,
        donor_id=donor.id,
        email=email,
        name="Ada Reader",
        frequency=frequency,
        currency="usd",
        amount_minor=amount,
        fee_cover_minor=0,
        total_minor=amount,
        campaign=campaign,
        utm_source="newsletter",
        utm_medium="email",
        utm_content="story-1",
        utm_term="b",
        stripe_checkout_session_id=session_id or f"cs_{checkout_id[3:]}",
    )
    session.add(checkout)
    session.flush()
    return checkout


def called(mock: responses.RequestsMock, path: str) -> int:
    return sum(1 for call in mock.calls if path in (call.request.url or ""))


# -- one-time payments -------------------------------------------------------------


def test_a_one_time_donation_is_recognised_once_and_settled_with_its_fee(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.one_time_donation("once1")
    add_checkout(db, "co_once1", "once1@example.org")
    db.commit()

    entries = run(database, scenario, stripe, stripe_http)

    assert set(entries) == {"charge:ch_once1", "balance_transaction:txn_once1"}
    assert entries["charge:ch_once1"][2] == (
        ("revenue_donations", "usd", -2500),
        ("stripe_receivable", "usd", 2500),
    )
    assert entries["balance_transaction:txn_once1"][2] == (
        ("fees_processing", "usd", 103),
        ("stripe_balance", "usd", 2397),
        ("stripe_receivable", "usd", -2500),
    )
    [row] = rows_of(database)
    assert row == {
        "occurred_at": "2026-09-21T14:13:30Z",
        "kind": "donation",
        "donor_email": "once1@example.org",
        "donor_name": "Ada Reader",
        "currency": "usd",
        "amount": "25.00",
        "fee": "1.03",
        "net": "23.97",
        "donor_currency": "usd",
        "donor_amount": "25.00",
        "frequency": "once",
        "campaign": "autumn",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_content": "story-1",
        "utm_term": "b",
        "stripe_id": "ch_once1",
    }
    # The balance transaction was fetched once; the form's metadata said
    # "once", so nobody asked which invoice the charge paid.
    assert called(stripe_http, "/v1/balance_transactions/txn_once1") == 1
    assert called(stripe_http, "/v1/invoice_payments") == 0
    checkout = db.get(Checkout, "co_once1")
    db.refresh(checkout)
    assert checkout.status == "complete"
    assert checkout.stripe_customer_id == "cus_once1"
    assert (
        db.scalar(
            select(StripeCustomer.donor_id).where(StripeCustomer.stripe_customer_id == "cus_once1")
        )
        == checkout.donor_id
    )


def test_a_donation_before_its_balance_transaction_shows_no_fee_yet(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.one_time_donation("early")
    scenario.events = [e for e in scenario.events if e["type"] != "charge.updated"]

    run(database, scenario, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["currency"], row["amount"], row["fee"], row["net"]) == ("usd", "25.00", "", "")


def test_attribution_is_picked_up_when_the_checkout_record_appears_later(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.one_time_donation("late"), stripe, stripe_http)
    assert rows_of(database)[0]["campaign"] == ""

    add_checkout(db, "co_late", "late@example.org", campaign="spring-appeal")
    db.commit()

    assert rows_of(database)[0]["campaign"] == "spring-appeal"


def test_a_payment_not_from_our_form_is_recorded_with_a_donor_from_its_email(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.payment_not_from_our_form("dash")

    run(database, scenario, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["donor_email"], row["amount"], row["fee"], row["frequency"]) == (
        "donation",
        "dash@example.org",
        "50.00",
        "1.75",
        "once",
    )
    assert row["campaign"] == ""
    # One question to Stripe: did this payment pay an invoice? (No.)
    assert called(stripe_http, "/v1/invoice_payments") == 1
    assert called(stripe_http, "/v1/customers/") == 0


def test_a_payment_without_an_email_finds_its_donor_through_the_customer(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.payment_not_from_our_form("noemail", with_email=False)

    run(database, scenario, stripe, stripe_http)

    assert rows_of(database)[0]["donor_email"] == "noemail@example.org"
    assert called(stripe_http, "/v1/customers/cus_noemail") == 1


def test_a_payments_known_donor_is_the_checkouts_then_the_customers_in_one_statement(
    database: Database, db: Session
) -> None:
    # Our checkout's donor wins over the customer's; then the customer's;
    # and whether the customer is on record at all (attaching it again would
    # change nothing: first writer wins). One SELECT each, whichever answers.
    checkout = add_checkout(db, "co_known", "form@example.org")
    other = find_or_create_donor(db, "other@example.org")
    attach_customer(db, other, "cus_known", livemode=False)
    db.commit()
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0])

    sa_event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.session() as session:
            found = {
                (checkout_id, customer_id): known_donor(session, checkout_id, customer_id)
                for checkout_id, customer_id in [
                    ("co_known", "cus_known"),
                    ("co_known", "cus_new"),
                    (None, "cus_known"),
                    ("co_missing", "cus_known"),
                    ("co_missing", "cus_new"),
                ]
            }
            nothing = known_donor(session, None, None)
    finally:
        sa_event.remove(database.engine, "before_cursor_execute", record)

    emails = {key: (d.email if d else None, attached) for key, (d, attached) in found.items()}
    assert emails == {
        ("co_known", "cus_known"): ("form@example.org", True),
        ("co_known", "cus_new"): ("form@example.org", False),
        (None, "cus_known"): ("other@example.org", True),
        ("co_missing", "cus_known"): ("other@example.org", True),
        ("co_missing", "cus_new"): (None, False),
    }
    assert found[("co_known", "cus_new")][0].id == checkout.donor_id
    assert nothing == (None, False)
    assert [s for s in statements if s not in {"BEGIN", "COMMIT", "ROLLBACK"}] == ["SELECT"] * 5


def test_a_charge_from_our_form_whose_customer_is_attached_inserts_no_customer_link(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    # checkout.session.completed attached the customer: the charge's donor
    # comes with that fact, so no INSERT ... ON CONFLICT DO NOTHING follows.
    add_checkout(db, "co_linked", "linked@example.org")
    db.commit()
    scenario = ef.one_time_donation("linked")
    scenario.stub(stripe_http)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa_event.listen(database.engine, "before_cursor_execute", record)
    try:
        apply_all(database, scenario.events, stripe)
    finally:
        sa_event.remove(database.engine, "before_cursor_execute", record)

    customer_inserts = [s for s in statements if s.startswith("INSERT INTO stripe_customers")]
    assert len(customer_inserts) == 1  # the checkout's, once
    with database.session() as session:
        [link] = session.scalars(select(StripeCustomer)).all()
        assert link.donor.email == "linked@example.org"
    assert rows_of(database)[0]["donor_email"] == "linked@example.org"


def test_a_charge_in_another_settlement_currency_balances_through_fx_conversion(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.one_time_donation(
        "fx",
        amount=2000,
        currency="eur",
        settlement_currency="usd",
        settled_amount=2180,
        exchange_rate=1.09,
    )

    entries = run(database, scenario, stripe, stripe_http)

    postings = entries["balance_transaction:txn_fx"][2]
    assert ("fx_conversion", "eur", 2000) in postings
    assert ("fx_conversion", "usd", -2180) in postings
    [row] = rows_of(database)
    assert (row["currency"], row["amount"], row["fee"], row["net"]) == (
        "usd",
        "21.80",
        "0.93",
        "20.87",
    )
    assert (row["donor_currency"], row["donor_amount"]) == ("eur", "20.00")


# -- memberships ---------------------------------------------------------------------


def test_a_membership_and_its_renewal_are_two_membership_payments(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.membership("mem", amount=1000, renewals=1)
    add_checkout(db, "co_mem", "mem@example.org", frequency="month", amount=1000)
    db.commit()

    run(database, scenario, stripe, stripe_http)

    rows = rows_of(database)
    assert [
        (r["kind"], r["amount"], r["fee"], r["frequency"], r["donor_email"], r["campaign"])
        for r in rows
    ] == [
        ("membership_payment", "10.00", "0.59", "month", "mem@example.org", "autumn"),
        ("membership_payment", "10.00", "0.59", "month", "mem@example.org", "autumn"),
    ]
    membership = db.scalars(select(Membership)).one()
    assert (membership.status, membership.interval, membership.amount_minor) == (
        "active",
        "month",
        1000,
    )
    assert membership.current_period_end == datetime.fromtimestamp(ef.T0 + 60 * ef.DAY, UTC)
    assert membership.donor_id == db.get(Checkout, "co_mem").donor_id
    # invoice.paid, invoice.payment_succeeded and invoice_payment.paid all
    # name the same charge: each payment is counted once.
    assert db.scalar(select(func.count()).select_from(Payment)) == 2
    # Look-ups: one balance transaction per charge, and the invoice question
    # only for a charge that came before its invoice payment.
    assert called(stripe_http, "/v1/balance_transactions/") == 2
    assert called(stripe_http, "/v1/invoice_payments") <= 2


def test_a_renewal_seen_first_finds_its_donor_by_the_listed_invoices_email(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    """A renewal's charge names no email and its customer is unknown here:
    the one question about its invoice (the invoice payments, the invoice
    expanded) brings the invoice's customer email, so no customer is fetched."""
    scenario = ef.membership("solo", amount=1000, renewals=1)
    scenario.events = [
        e
        for e in scenario.events
        if e["type"] in ("charge.succeeded", "charge.updated")
        and e["data"]["object"]["id"] == "ch_solo_1"
    ]

    run(database, scenario, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["donor_email"], row["fee"]) == (
        "membership_payment",
        "solo@example.org",
        "0.59",
    )
    assert called(stripe_http, "/v1/invoice_payments") == 1
    assert called(stripe_http, "/v1/customers/") == 0


def test_a_failed_renewal_then_a_successful_retry_is_one_payment(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.failed_renewal_then_retry("retry")

    run(database, scenario, stripe, stripe_http)

    kinds = [r["kind"] for r in rows_of(database)]
    assert kinds == ["membership_payment", "membership_payment"]
    assert db.scalars(select(Payment.stripe_charge_id).order_by(Payment.id)).all() == [
        "ch_retry_0",
        "ch_retry_r_ok",
    ] or set(db.scalars(select(Payment.stripe_charge_id))) == {"ch_retry_0", "ch_retry_r_ok"}
    assert db.scalars(select(Membership.status)).one() == "active"


def test_membership_state_never_goes_back_to_an_older_event(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.failed_renewal_then_retry("order")
    events = list(reversed(scenario.events))

    scenario.stub(stripe_http)
    apply_all(database, events, stripe)

    assert db.scalars(select(Membership.status)).one() == "active"


def test_events_of_the_same_second_ask_stripe_for_the_subscription(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    base = ef.subscription(
        "sub_tie",
        customer="cus_tie",
        created=ef.T0,
        status="active",
        amount=1000,
        period_end=ef.T0 + 30 * ef.DAY,
    )
    past_due = {**base, "status": "past_due"}
    stripe_http.get(f"{ef.API}/subscriptions/sub_tie", json=past_due)
    apply_all(
        database,
        [
            make_event("customer.subscription.updated", base, created=ef.T0 + 5),
            make_event(
                "customer.subscription.updated", {**base, "status": "incomplete"}, created=ef.T0 + 5
            ),
        ],
        stripe,
    )

    assert db.scalars(select(Membership.status)).one() == "past_due"
    assert called(stripe_http, "/v1/subscriptions/sub_tie") == 1


def test_cancellation_at_period_end_keeps_the_membership_active_until_it_ends(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    base = ef.membership("cancel", renewals=0)
    cancel = ef.cancellation_at_period_end(base, at=ef.T0 + 10 * ef.DAY)
    run(database, base + cancel, stripe, stripe_http)

    membership = db.scalars(select(Membership)).one()
    assert (membership.status, membership.cancel_at_period_end) == ("active", True)
    assert membership.canceled_at == datetime.fromtimestamp(ef.T0 + 10 * ef.DAY, UTC)
    with database.session() as session:
        assert ledger.summary(session)["active_memberships"] == 1

    run(database, ef.subscription_deleted(base, at=ef.T0 + 20 * ef.DAY), stripe, stripe_http)
    db.rollback()
    membership = db.scalars(select(Membership)).one()
    assert membership.status == "canceled"
    assert membership.ended_at == datetime.fromtimestamp(ef.T0 + 20 * ef.DAY, UTC)
    with database.session() as session:
        assert ledger.summary(session)["active_memberships"] == 0


def test_old_version_membership_shapes_are_counted_once_per_charge(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.old_version_membership("legacy"), stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["amount"], row["fee"], row["frequency"], row["donor_email"]) == (
        "membership_payment",
        "10.00",
        "0.59",
        "month",
        "legacy@example.org",
    )
    assert called(stripe_http, "/v1/invoice_payments") == 0


def test_an_old_version_one_time_charge_says_it_paid_no_invoice(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.old_version_one_time("legacy1"), stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["amount"], row["fee"]) == ("donation", "30.00", "1.17")
    assert called(stripe_http, "/v1/invoice_payments") == 0


# -- refunds, disputes, payouts -------------------------------------------------------


def test_two_partial_refunds_on_one_charge_are_two_entries(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("pr")
    refunds = ef.partial_refunds(once.facts["charge_object"], [500, 700], start=ef.T0 + ef.DAY)

    run(database, once + refunds, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["fee"], r["net"], r["stripe_id"]) for r in rows] == [
        ("donation", "25.00", "1.03", "23.97", "ch_pr"),
        ("refund", "-5.00", "0.00", "-5.00", "re_ch_pr_0"),
        ("refund", "-7.00", "0.00", "-7.00", "re_ch_pr_1"),
    ]
    assert all(r["donor_email"] == "pr@example.org" for r in rows)
    assert db.scalars(select(Payment.status)).one() == "partially_refunded"
    assert db.scalar(select(func.count()).select_from(Refund)) == 2


def test_a_dashboard_refund_before_its_charge_is_known_still_posts(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.payment_not_from_our_form("dref")
    refund = ef.partial_refunds(
        ef.charge(
            "ch_dref",
            amount=5000,
            created=ef.T0,
            payment_intent="pi_dref",
            customer="cus_dref",
            email="dref@example.org",
            balance_transaction="txn_dref",
        ),
        [5000],
        start=ef.T0 + ef.DAY,
    )
    scenario = refund + once  # the refund's events first

    run(database, scenario, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"]) for r in rows] == [("donation", "50.00"), ("refund", "-50.00")]
    assert rows[1]["donor_email"] == "dref@example.org"


def test_a_failed_refund_gives_the_money_back(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("rf")
    failing = ef.refund_that_fails("ch_rf", 2500, start=ef.T0 + ef.DAY, tag="rf")

    run(database, once + failing, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["net"]) for r in rows] == [
        ("donation", "25.00", "23.97"),
        ("refund", "-25.00", "-25.00"),
        ("refund_failure", "25.00", "25.00"),
    ]
    assert db.scalars(select(Refund.status)).one() == "failed"


def test_a_lost_dispute_withdraws_the_amount_and_the_dispute_fee(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("dl")
    lost = ef.dispute_lost("ch_dl", 2500, start=ef.T0 + ef.DAY, tag="dl")

    entries = run(database, once + lost, stripe, stripe_http)

    assert entries["balance_transaction:txn_du_dl_w"][2] == (
        ("chargebacks", "usd", 2500),
        ("fees_dispute", "usd", 1500),
        ("stripe_balance", "usd", -4000),
    )
    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["fee"], r["net"]) for r in rows][1] == (
        "dispute",
        "-25.00",
        "15.00",
        "-40.00",
    )
    dispute = db.scalars(select(Dispute)).one()
    assert (dispute.status, dispute.outcome, dispute.reason) == ("lost", "lost", "fraudulent")
    with database.session() as session:
        totals = ledger.summary(session)["currencies"]["usd"]
    assert totals["disputes"] == "-25.00"
    assert totals["fees"] == "16.03"
    assert totals["net"] == "-16.03"


def test_a_won_dispute_withdraws_and_reinstates(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("dw")
    won = ef.dispute_won("ch_dw", 2500, start=ef.T0 + ef.DAY, tag="dw")

    run(database, once + won, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["fee"], r["net"]) for r in rows] == [
        ("donation", "25.00", "1.03", "23.97"),
        ("dispute", "-25.00", "15.00", "-40.00"),
        ("dispute_reversal", "25.00", "-15.00", "40.00"),
    ]
    assert db.scalars(select(Dispute.outcome)).one() == "won"


def test_a_payout_and_the_stripe_fee_listed_in_it_are_posted_once(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.payout_paid("p1", 1000, start=ef.T0, stripe_fee=200)

    run(database, scenario, stripe, stripe_http)

    rows = rows_of(database)
    assert sorted((r["kind"], r["amount"], r["frequency"]) for r in rows) == [
        ("payout", "-10.00", ""),
        ("stripe_fee", "-2.00", ""),
    ]
    assert db.scalars(select(Payout.status)).one() == "paid"
    with database.session() as session:
        usd = ledger.summary(session)["currencies"]["usd"]
    assert (usd["payouts"], usd["fees"], usd["net"]) == ("-10.00", "2.00", "-2.00")


def test_a_failed_payout_returns_the_money(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.payout_failed("pf", 1000, start=ef.T0), stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("payout", "-10.00"),
        ("payout_failure", "10.00"),
    ]
    assert db.scalars(select(Payout.status)).one() == "failed"


# -- the edges of processing ----------------------------------------------------------


def test_an_unknown_event_type_changes_nothing(
    database: Database, db: Session, stripe: StripeApi
) -> None:
    apply_all(
        database, [make_event("customer.created", {"id": "cus_x", "object": "customer"})], stripe
    )

    assert db.scalar(select(func.count()).select_from(ledger.JournalEntry)) == 0


def test_a_balance_transaction_stripe_does_not_know_is_a_not_found_error(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.get(
        f"{ef.API}/balance_transactions/txn_gone",
        status=404,
        json={"error": {"type": "invalid_request_error", "message": "No such"}},
    )
    obj = ef.charge(
        "ch_gone",
        amount=1000,
        created=ef.T0,
        payment_intent=None,
        email="gone@example.org",
        balance_transaction="txn_gone",
        metadata={"frequency": "once"},
    )

    with database.session() as session, pytest.raises(PaymentsError) as raised:
        apply_event(session, make_event("charge.succeeded", obj), stripe)
    assert raised.value.kind == "not_found"


def test_the_journal_refuses_updates_and_deletes(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.one_time_donation("ro"), stripe, stripe_http, twice=False)

    for statement in (
        "UPDATE journal_postings SET amount_minor = 0",
        "DELETE FROM journal_entries",
        "UPDATE journal_entries SET kind = 'refund'",
    ):
        with database.session() as session, pytest.raises(DBAPIError):
            session.execute(text(statement))
            session.commit()


# -- order, duplicates, concurrency ---------------------------------------------------

SLOW = bool(os.environ.get("SLOW_TESTS"))


def _fresh_database(db_url: str, template: Path | None, tmp: Path, n: int) -> Database:
    if db_url.startswith("sqlite"):
        assert template is not None
        path = tmp / f"perm{n}.db"
        path.write_bytes(template.read_bytes())
        return Database(f"sqlite:///{path}")
    database = Database(db_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return database


def _ledger_of(database: Database) -> tuple[dict[str, Any], list[list[str]]]:
    with database.session() as session:
        assert ledger.verify(session) == []
        return ledger.entries_by_key(session), list(ledger.export_rows(session))


def test_any_order_of_a_full_sequence_gives_the_identical_ledger_and_csv(
    db_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    stripe: StripeApi,
    stripe_http: responses.RequestsMock,
) -> None:
    scenario = ef.full_sequence()
    scenario.stub(stripe_http)
    template = request.getfixturevalue("sqlite_template") if db_url.startswith("sqlite") else None

    def prepare(database: Database) -> None:
        with database.session() as session:
            add_checkout(session, "co_seq_once", "seq_once@example.org")
            add_checkout(
                session, "co_seq_member", "seq_member@example.org", frequency="month", amount=1000
            )
            session.commit()

    reference_db = _fresh_database(db_url, template, tmp_path, 0)
    prepare(reference_db)
    apply_all(reference_db, scenario.events, stripe)
    reference = _ledger_of(reference_db)
    reference_db.dispose()
    # Few Stripe calls: one per balance transaction the payloads lack, one
    # listing for the payout, the invoice question at most once per charge.
    assert len(stripe_http.calls) <= len(scenario.events) // 3
    # three payments, a refund, a dispute, a payout and the Stripe fee in it
    assert len(reference[1]) == 7
    counter = iter(range(1, 10_000))

    @settings(
        max_examples=60 if SLOW else 15,
        deadline=None,
        derandomize=not SLOW,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(order=st.permutations(scenario.events), duplicated=st.integers(0, 5))
    def check(order: list[dict[str, Any]], duplicated: int) -> None:
        database = _fresh_database(db_url, template, tmp_path, next(counter))
        try:
            prepare(database)
            apply_all(database, order + order[:duplicated], stripe)
            assert _ledger_of(database) == reference
        finally:
            database.dispose()

    check()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_events_of_one_payment_applied_at_once_have_one_effect(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("conc")
    member = ef.membership("concm", renewals=0)
    scenario = once + member
    scenario.stub(stripe_http)
    events = scenario.events * 2  # every event twice, all at once
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(events))

    def worker(event: dict[str, Any]) -> None:
        barrier.wait()
        for _attempt in range(10):  # as the worker would: roll back, try again
            try:
                with database.session() as session:
                    apply_event(session, event, stripe)
                    session.commit()
                return
            except DBAPIError:
                continue
            except BaseException as exc:
                errors.append(exc)
                return
        errors.append(RuntimeError(f"{event['type']} kept failing"))

    threads = [threading.Thread(target=worker, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []

    with database.session() as session:
        entries = ledger.entries_by_key(session)
        assert ledger.verify(session) == []
        assert session.scalar(select(func.count()).select_from(Payment)) == 2
        assert session.scalar(select(func.count()).select_from(Donor)) == 2
    assert set(entries) == {
        "charge:ch_conc",
        "balance_transaction:txn_conc",
        "charge:ch_concm_0",
        "balance_transaction:txn_concm_0",
    }


# -- checkout sessions ----------------------------------------------------------------


def test_a_bank_debit_is_recognised_only_when_it_succeeds(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    add_checkout(db, "co_sepa", "sepa@example.org")
    db.commit()
    meta = {"checkout_id": "co_sepa", "frequency": "once"}
    bt = ef.balance_transaction(
        "txn_sepa", amount=2500, fee=35, source="ch_sepa", created=ef.T0 + 1
    )
    session_obj = ef.checkout_session(
        "cs_sepa",
        checkout_id="co_sepa",
        mode="payment",
        created=ef.T0,
        customer="cus_sepa",
        email="sepa@example.org",
        amount=2500,
        payment_intent="pi_sepa",
        payment_status="unpaid",
    )
    pending = ef.charge(
        "ch_sepa",
        amount=2500,
        created=ef.T0 + 1,
        payment_intent="pi_sepa",
        customer="cus_sepa",
        email="sepa@example.org",
        metadata=meta,
        status="pending",
        balance_transaction="txn_sepa",
    )
    scenario = ef.Scenario()
    scenario.get("/balance_transactions/txn_sepa", bt)
    scenario.add("checkout.session.completed", session_obj, ef.T0 + 2)
    scenario.add("charge.pending", pending, ef.T0 + 2)
    run(database, scenario, stripe, stripe_http)
    assert rows_of(database) == []
    assert db.get(Checkout, "co_sepa").status == "complete"

    later = ef.Scenario()
    later.add(
        "checkout.session.async_payment_succeeded",
        {**session_obj, "payment_status": "paid"},
        ef.T0 + 3 * ef.DAY,
    )
    later.add(
        "charge.succeeded",
        {**pending, "status": "succeeded", "paid": True, "captured": True, "amount_captured": 2500},
        ef.T0 + 3 * ef.DAY,
    )
    run(database, later, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["amount"], row["fee"], row["campaign"]) == (
        "donation",
        "25.00",
        "0.35",
        "autumn",
    )


def test_a_failed_bank_debit_posts_nothing(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    add_checkout(db, "co_fail", "fail@example.org")
    db.commit()
    session_obj = ef.checkout_session(
        "cs_fail",
        checkout_id="co_fail",
        mode="payment",
        created=ef.T0,
        customer="cus_fail",
        email="fail@example.org",
        amount=2500,
        payment_intent="pi_fail",
        payment_status="unpaid",
    )
    failed = ef.charge(
        "ch_fail",
        amount=2500,
        created=ef.T0 + 1,
        payment_intent="pi_fail",
        customer="cus_fail",
        status="failed",
    )
    scenario = ef.Scenario()
    scenario.add("checkout.session.completed", session_obj, ef.T0 + 2)
    scenario.add("checkout.session.async_payment_failed", session_obj, ef.T0 + 3 * ef.DAY)
    scenario.add("charge.failed", failed, ef.T0 + 3 * ef.DAY)
    scenario.add(
        "payment_intent.payment_failed",
        ef.payment_intent(
            "pi_fail",
            amount=2500,
            created=ef.T0,
            latest_charge="ch_fail",
            status="requires_payment_method",
        ),
        ef.T0 + 3 * ef.DAY,
    )

    run(database, scenario, stripe, stripe_http)

    assert rows_of(database) == []
    assert db.scalar(select(func.count()).select_from(Payment)) == 0


def test_an_expired_checkout_session_marks_the_checkout_expired(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    add_checkout(db, "co_exp", "exp@example.org")
    db.commit()
    obj = ef.checkout_session(
        "cs_exp",
        checkout_id="co_exp",
        mode="payment",
        created=ef.T0,
        customer="cus_exp",
        email="exp@example.org",
        amount=2500,
        status="expired",
        payment_status="unpaid",
    )
    scenario = ef.Scenario()
    scenario.add("checkout.session.expired", obj, ef.T0 + ef.DAY)

    run(database, scenario, stripe, stripe_http)

    db.rollback()
    assert db.get(Checkout, "co_exp").status == "expired"


# -- the audit's money bugs (issue 8) -------------------------------------------------


def test_a_refund_known_only_from_amount_refunded_is_listed_from_stripe_and_posted_once(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("norefev")
    refunds = ef.refunds_without_refund_events(
        once.facts["charge_object"], [500, 700], start=ef.T0 + ef.DAY, tag="norefev"
    )

    run(database, once + refunds, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["stripe_id"], r["donor_email"]) for r in rows] == [
        ("donation", "25.00", "ch_norefev", "norefev@example.org"),
        ("refund", "-5.00", "re_norefev_0", "norefev@example.org"),
        ("refund", "-7.00", "re_norefev_1", "norefev@example.org"),
    ]
    # Listed once (the first charge.refunded finds both); the second event
    # and the second pass find the ledger holding what Stripe says.
    assert called(stripe_http, "/v1/refunds?") == 1
    payment = db.scalars(select(Payment)).one()
    assert payment.amount_refunded_minor == 1200
    assert db.scalar(select(func.count()).select_from(Refund)) == 2


def test_verify_names_a_charge_whose_refunds_differ_from_its_amount_refunded(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("short")
    # Stripe says 12.00 was refunded, but lists only the 5.00 refund.
    refunds = ef.refunds_without_refund_events(
        once.facts["charge_object"], [500, 700], start=ef.T0 + ef.DAY, tag="short", listed=1
    )
    scenario = once + refunds
    scenario.stub(stripe_http)

    apply_all(database, scenario.events, stripe)

    with database.session() as session:
        problems = ledger.verify(session)
    assert problems == [
        "charge ch_short: Stripe says 1200 usd refunded, the ledger's refunds add up to 500"
    ]


def test_a_refund_event_before_its_charge_refunded_leaves_verify_clean(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    # Found by tests/property: the refund's own event came first, the
    # charge.refunded that raises the charge's refunded figure was still on its
    # way; verify called the posted refund a difference meanwhile.
    once = ef.one_time_donation("early")
    refunds = ef.partial_refunds(once.facts["charge_object"], [500], start=ef.T0 + ef.DAY)
    scenario = once + refunds
    scenario.stub(stripe_http)
    refund_created = next(e for e in refunds.events if e["type"] == "refund.created")

    apply_all(database, [*once.events, refund_created], stripe)

    with database.session() as session:
        assert ledger.verify(session) == []
    apply_all(database, refunds.events, stripe)
    with database.session() as session:
        assert ledger.verify(session) == []


def test_a_refund_seen_only_in_a_payouts_transactions_posts_as_the_refund_it_is(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("porf")
    at = ef.T0 + 2 * ef.DAY
    refund_txn = ef.balance_transaction(
        "txn_re_porf", amount=-800, fee=0, source="re_porf", created=at, type="refund"
    )
    payout = ef.payout_paid("porf", 1597, start=at + ef.DAY)
    listed = [
        refund_txn,
        ef.balance_transaction(
            "txn_po_porf", amount=-1597, fee=0, source="po_porf", created=at + ef.DAY, type="payout"
        ),
    ]
    payout.stubs = [s for s in payout.stubs if s.path != "/balance_transactions"]
    payout.get(
        "/balance_transactions",
        {"object": "list", "data": listed, "has_more": False},
        query={"payout": "po_porf", "limit": "100"},
    )
    payout.get(
        "/refunds/re_porf",
        ef.refund(
            "re_porf",
            charge_id="ch_porf",
            amount=800,
            created=at,
            balance_transaction="txn_re_porf",
        ),
    )
    # The charge's own word comes last: the ledger holds the refund already.
    late = ef.Scenario()
    late.add(
        "charge.refunded",
        {**once.facts["charge_object"], "amount_refunded": 800},
        at + 3 * ef.DAY,
        api_version=ef.REFUND_EVENTS_PREDECESSOR,
    )

    run(database, once + payout + late, stripe, stripe_http)

    rows = rows_of(database)
    assert [(r["kind"], r["amount"], r["stripe_id"], r["donor_email"]) for r in rows] == [
        ("donation", "25.00", "ch_porf", "porf@example.org"),
        ("refund", "-8.00", "re_porf", "porf@example.org"),
        ("payout", "-15.97", "po_porf", ""),
    ]
    # The listing had the refund's figures: only the refund itself was fetched.
    assert called(stripe_http, "/v1/refunds/re_porf") == 1
    assert called(stripe_http, "/v1/balance_transactions/txn_re_porf") == 0
    assert called(stripe_http, "/v1/refunds?") == 0


@pytest.mark.parametrize("old_shape", [False, True], ids=["current", "before-basil"])
def test_a_one_off_invoice_payment_is_a_one_time_donation(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock, old_shape: bool
) -> None:
    scenario = ef.one_off_invoice_payment("oneoff", old_shape=old_shape)

    run(database, scenario, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["amount"], row["frequency"]) == ("donation", "40.00", "once")
    # The charge came before its invoice's event. Now the invoice payments
    # listed bring the invoice expanded; before, the charge named it: asked once.
    assert called(stripe_http, "/v1/invoices/in_oneoff") == (1 if old_shape else 0)


def test_a_one_off_invoice_known_before_its_charge_needs_no_look_up(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.one_off_invoice_payment("oneoff2")
    scenario.events.sort(key=lambda e: e["type"] != "invoice.paid")

    run(database, scenario, stripe, stripe_http)

    [row] = rows_of(database)
    assert (row["kind"], row["frequency"]) == ("donation", "once")
    assert called(stripe_http, "/v1/invoices/") == 0


def test_an_uncaptured_authorisation_is_recognised_when_captured_for_what_was_captured(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.manual_capture("cap", amount=2500, captured=1500)
    held = ef.Scenario(events=scenario.events[:2], stubs=scenario.stubs)

    run(database, held, stripe, stripe_http)
    assert rows_of(database) == []

    run(database, scenario, stripe, stripe_http)
    [row] = rows_of(database)
    assert (row["kind"], row["amount"], row["fee"], row["donor_currency"], row["donor_amount"]) == (
        "donation",
        "15.00",
        "0.74",
        "usd",
        "15.00",
    )
    # The 10.00 Stripe released counts in amount_refunded, but no money was
    # refunded: nothing is listed, nothing posted.
    assert called(stripe_http, "/v1/refunds") == 0


def test_a_released_authorisation_posts_nothing(
    database: Database, db: Session, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    run(database, ef.manual_capture("rel", amount=2500, captured=None), stripe, stripe_http)

    assert rows_of(database) == []
    assert db.scalar(select(func.count()).select_from(Payment)) == 0
    assert called(stripe_http, "/v1/refunds") == 0


def test_disputes_and_refund_failures_of_a_converted_charge_show_what_the_donor_was_charged(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    fx = ef.one_time_donation(
        "fxd",
        amount=2000,
        currency="eur",
        settlement_currency="usd",
        settled_amount=2180,
        exchange_rate=1.09,
    )
    won = ef.dispute_won(
        "ch_fxd", 2000, currency="eur", settled=("usd", 2180), start=ef.T0 + ef.DAY, tag="fxd"
    )
    bounced = ef.refund_that_fails(
        "ch_fxd", 2000, currency="eur", settled=("usd", 2180), start=ef.T0 + 2 * ef.DAY, tag="fxd"
    )

    run(database, fx + won + bounced, stripe, stripe_http)

    rows = rows_of(database)
    assert [
        (r["kind"], r["currency"], r["amount"], r["donor_currency"], r["donor_amount"])
        for r in rows
    ] == [
        ("donation", "usd", "21.80", "eur", "20.00"),
        ("dispute", "usd", "-21.80", "eur", "-20.00"),
        ("refund", "usd", "-21.80", "eur", "-20.00"),
        ("refund_failure", "usd", "21.80", "eur", "20.00"),
        ("dispute_reversal", "usd", "21.80", "eur", "20.00"),
    ]


def test_fx_fees_and_every_fee_category_in_a_payout_are_stripe_fees(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.payout_paid("fxfee", 1000, start=ef.T0)
    listed = [
        ef.balance_transaction(
            "txn_po_fxfee", amount=-1000, fee=0, source="po_fxfee", created=ef.T0, type="payout"
        ),
        ef.balance_transaction(
            "txn_fx_fee",
            amount=-37,
            fee=0,
            source=None,
            created=ef.T0 - ef.DAY,
            type="stripe_fx_fee",
            reporting_category="fee",
        ),
        ef.balance_transaction(
            "txn_new_fee",
            amount=-12,
            fee=0,
            source=None,
            created=ef.T0 - ef.DAY + 1,
            type="some_future_fee",
            reporting_category="fee",
        ),
        ef.balance_transaction(
            "txn_adj",
            amount=-5,
            fee=0,
            source=None,
            created=ef.T0 - ef.DAY + 2,
            type="adjustment",
            reporting_category="other_adjustment",
        ),
    ]
    scenario.stubs = [s for s in scenario.stubs if s.path != "/balance_transactions"]
    scenario.get(
        "/balance_transactions",
        {"object": "list", "data": listed, "has_more": False},
        query={"payout": "po_fxfee", "limit": "100"},
    )

    run(database, scenario, stripe, stripe_http)

    assert [(r["kind"], r["amount"]) for r in rows_of(database)] == [
        ("stripe_fee", "-0.37"),
        ("stripe_fee", "-0.12"),
        ("adjustment", "-0.05"),
        ("payout", "-10.00"),
    ]
    with database.session() as session:
        usd = ledger.summary(session)["currencies"]["usd"]
    assert (usd["fees"], usd["other"]) == ("0.49", "-0.05")


def test_a_refund_failure_seen_only_in_a_payouts_transactions_posts_through_its_refund(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("pofail")
    at = ef.T0 + 2 * ef.DAY
    scenario = ef.payout_paid("pofail", 1000, start=at + 6 * ef.DAY)
    failure = ef.balance_transaction(
        "txn_refail_pofail",
        amount=800,
        fee=0,
        source="re_pofail",
        created=at + 5 * ef.DAY,
        type="refund_failure",
    )
    listed = [
        failure,
        ef.balance_transaction(
            "txn_po_pofail",
            amount=-1000,
            fee=0,
            source="po_pofail",
            created=at + 6 * ef.DAY,
            type="payout",
        ),
    ]
    scenario.stubs = [s for s in scenario.stubs if s.path != "/balance_transactions"]
    scenario.get(
        "/balance_transactions",
        {"object": "list", "data": listed, "has_more": False},
        query={"payout": "po_pofail", "limit": "100"},
    )
    scenario.get(
        "/balance_transactions/txn_re_pofail",
        ef.balance_transaction(
            "txn_re_pofail", amount=-800, fee=0, source="re_pofail", created=at, type="refund"
        ),
    )
    scenario.get(
        "/refunds/re_pofail",
        ef.refund(
            "re_pofail",
            charge_id="ch_pofail",
            amount=800,
            created=at,
            balance_transaction="txn_re_pofail",
            status="failed",
            failure_balance_transaction="txn_refail_pofail",
        ),
    )
    late = ef.Scenario()
    late.add(
        "charge.refunded",
        {**once.facts["charge_object"], "amount_refunded": 0},
        at + 7 * ef.DAY,
        api_version=ef.REFUND_EVENTS_PREDECESSOR,
    )

    run(database, once + scenario + late, stripe, stripe_http)

    assert [(r["kind"], r["amount"], r["stripe_id"]) for r in rows_of(database)] == [
        ("donation", "25.00", "ch_pofail"),
        ("refund", "-8.00", "re_pofail"),
        ("refund_failure", "8.00", "re_pofail"),
        ("payout", "-10.00", "po_pofail"),
    ]
    assert called(stripe_http, "/v1/balance_transactions/txn_refail_pofail") == 0
