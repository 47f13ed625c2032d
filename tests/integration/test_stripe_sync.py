"""`donations stripe sync`: a ledger that missed a week of webhooks is whole
after one sync, a second sync changes nothing, the reconcile report lists
exactly what differs (a missing refund, a wrong fee, an extra entry, a payout
that does not sum), and a sync stopped half way ends, once run again, with the
ledger an uninterrupted run gives. Stripe's lists are stubbed at HTTP
(tests/fake_stripe_lists.py), in the current API's shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import create_app, ledger
from app.cli import main
from app.clock import frozen_at
from app.db import Database
from app.ledger.rollup import open_changes
from app.migrate import upgrade
from app.outbox.models import OutboxJob
from app.payments import PaymentsError
from app.reconcile.models import SyncCursor, SyncRequest, SyncRun
from app.reconcile.schedule import run_due
from tests import event_factory as ef
from tests.fake_stripe_lists import FakeStripeLists
from tests.integration.test_finance import CSRF_FIELD, login
from tests.stripe_helpers import make_event
from webhooks.handlers import apply_event

T0 = ef.T0  # 2026-09-21T14:13:20Z
DAY = ef.DAY
WINDOW = ["--since", "2026-09-21", "--until", "2026-09-28"]

pytestmark = pytest.mark.settings(STRIPE_SYNC_REQUESTS_PER_SECOND=0, STRIPE_SYNC_MAX_RETRIES=0)


def txn(
    txn_id: str,
    amount: int,
    fee: int,
    source: str | None,
    created: int,
    type: str = "charge",
    category: str | None = None,
) -> dict[str, Any]:
    return ef.balance_transaction(
        txn_id,
        amount=amount,
        fee=fee,
        source=source or txn_id,
        created=created,
        type=type,
        reporting_category=category,
    )


def a_week_of_stripe() -> FakeStripeLists:
    """A one-time gift, a membership payment, a gift refunded in the Dashboard,
    a gift disputed and lost, a Stripe fee, and the automatic payout of it all."""
    fake = FakeStripeLists()
    # A one-time gift through our form (metadata), settled.
    t_a = txn("txn_a", 5000, ef.fee_for(5000), "ch_a", T0 + 10)
    fake.add("balance_transactions", t_a)
    fake.add(
        "charges",
        ef.charge(
            "ch_a",
            amount=5000,
            created=T0 + 10,
            payment_intent="pi_a",
            customer="cus_a",
            email="ada@example.org",
            name="Ada",
            balance_transaction=t_a,
            metadata={"frequency": "once", "checkout_id": "co_a"},
            amount_refunded=1000,
        ),
    )
    # A membership's payment: the charge says nothing of its invoice (endive);
    # the invoice payment links it, the invoice names the subscription.
    fake.add(
        "subscriptions",
        ef.subscription(
            "sub_m",
            customer="cus_m",
            created=T0 + 20,
            status="active",
            amount=1000,
            period_end=T0 + 30 * DAY,
        ),
    )
    fake.add(
        "invoices",
        ef.invoice(
            "in_m",
            customer="cus_m",
            subscription_id="sub_m",
            created=T0 + 21,
            amount=1000,
            email="max@example.org",
        ),
    )
    fake.add(
        "invoice_payments",
        ef.invoice_payment(
            "inpay_m", invoice_id="in_m", payment_intent="pi_m", amount=1000, created=T0 + 22
        ),
    )
    t_m = txn("txn_m", 1000, ef.fee_for(1000), "ch_m", T0 + 22)
    fake.add("balance_transactions", t_m)
    fake.add(
        "charges",
        ef.charge(
            "ch_m",
            amount=1000,
            created=T0 + 22,
            payment_intent="pi_m",
            customer="cus_m",
            email="max@example.org",
            name="Max",
            balance_transaction=t_m,
        ),
    )
    # A refund made in the Dashboard: no webhook ever reached us.
    t_re = txn("txn_re_a", -1000, 0, "re_a", T0 + DAY, type="refund")
    fake.add("balance_transactions", t_re)
    fake.add(
        "refunds",
        ef.refund(
            "re_a", charge_id="ch_a", amount=1000, created=T0 + DAY, balance_transaction=t_re
        ),
    )
    # A gift disputed and lost: the withdrawal with the dispute fee.
    t_d = txn("txn_d", 3000, ef.fee_for(3000), "ch_d", T0 + 30)
    fake.add("balance_transactions", t_d)
    fake.add(
        "charges",
        ef.charge(
            "ch_d",
            amount=3000,
            created=T0 + 30,
            payment_intent="pi_d",
            customer="cus_d",
            email="dora@example.org",
            name="Dora",
            balance_transaction=t_d,
            disputed=True,
            metadata={"frequency": "once"},
        ),
    )
    t_dp = txn("txn_dp_d", -3000, 1500, "dp_d", T0 + 2 * DAY, type="adjustment", category="dispute")
    fake.add("balance_transactions", t_dp)
    fake.add(
        "disputes",
        ef.dispute(
            "dp_d",
            charge_id="ch_d",
            amount=3000,
            created=T0 + 2 * DAY,
            status="lost",
            balance_transactions=[t_dp],
        ),
    )
    # A fee Stripe charges outside a payment.
    t_fee = txn("txn_fee", -500, 0, None, T0 + 2 * DAY + 5, type="stripe_fee", category="fee")
    fake.add("balance_transactions", t_fee)
    # The automatic payout of everything above.
    inside = [t_a, t_m, t_re, t_d, t_dp, t_fee]
    total = sum(t["net"] for t in inside)
    t_po = txn("txn_po", -total, 0, "po_1", T0 + 3 * DAY, type="payout")
    fake.add("balance_transactions", t_po)
    payout = ef.payout(
        "po_1", amount=total, created=T0 + 3 * DAY, status="paid", balance_transaction=t_po
    )
    payout["automatic"] = True
    fake.add("payouts", payout)
    fake.in_payout["po_1"] = [t["id"] for t in inside] + ["txn_po"]
    return fake


def sync(runner: FlaskCliRunner, *args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(main, ["stripe", "sync", *WINDOW, "--json", *args])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, (result.output, result.exception)
    return result.exit_code, json.loads(lines[-1])


def journal(app: Flask) -> dict[str, Any]:
    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        return ledger.entries_by_key(session)


def kinds(app: Flask) -> list[tuple[str, str, str]]:
    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        return sorted((r.kind, r.stripe_id, str(r.amount_minor)) for r in ledger.iter_rows(session))


def test_one_sync_makes_a_ledger_that_missed_a_week_of_webhooks_whole(
    app: Flask, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)

    code, report = sync(runner)

    assert kinds(app) == sorted(
        [
            ("donation", "ch_a", "5000"),
            ("membership_payment", "ch_m", "1000"),
            ("donation", "ch_d", "3000"),
            ("refund", "re_a", "-1000"),
            ("dispute", "dp_d", "-3000"),
            ("stripe_fee", "txn_fee", "-500"),
            (
                "payout",
                "po_1",
                str(
                    -sum(
                        t["net"]
                        for t in fake.objects["balance_transactions"]
                        if t["type"] != "payout"
                    )
                ),
            ),
        ]
    )
    assert (code, report["differences"]) == (0, 0), report
    assert report["payouts"][0]["ties_out"] is True
    assert report["payouts"][0]["transactions"] == 6
    usd = report["currencies"]["usd"]
    assert usd["stripe"] == usd["ledger"]
    assert usd["stripe"]["gross"] == "90.00"
    verified = runner.invoke(main, ["ledger", "verify"])
    assert verified.exit_code == 0, verified.output
    # Fees came with the lists (expanded): no balance transaction was fetched alone.
    assert not [c for c in fake.calls if c.startswith("/v1/balance_transactions/")]

    # History recovered by a sync mails no receipt months later.
    with app.extensions["donations.db"].session() as session:
        assert session.scalars(select(OutboxJob.key)).all() == []
        assert open_changes(session) == 0  # folded into the daily totals by the command

    before = journal(app)
    code, again = sync(runner)
    assert (code, again["differences"]) == (0, 0)
    assert journal(app) == before


def test_the_report_lists_exactly_what_differs(
    app: Flask, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    assert sync(runner)[0] == 0

    # A refund Stripe has and the ledger lacks (listed for the report only).
    fake.add(
        "balance_transactions", txn("txn_re_late", -500, 0, "re_late", T0 + 4 * DAY, type="refund")
    )
    # A fee the ledger holds wrong: Stripe now says 2.00 for the dispute gift.
    fake.find("txn_d")["fee"] = 200  # type: ignore[index]
    fake.find("txn_d")["net"] = 2800  # type: ignore[index]
    # An entry the ledger has and Stripe does not.
    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        ledger.post_movement(
            session,
            ledger.BalanceTxn(
                id="txn_ghost",
                type="adjustment",
                currency="usd",
                amount_minor=700,
                fee_minor=0,
                net_minor=700,
                created_at=datetime.fromtimestamp(T0 + 5 * DAY, UTC),
            ),
            "adjustment",
            object_id="txn_ghost",
        )
        session.commit()
    # A payout that does not sum: Stripe lists one transaction fewer inside it.
    fake.in_payout["po_1"].remove("txn_fee")

    code, report = sync(runner, "--report-only")

    assert code == 1
    assert [m["balance_transaction"] for m in report["missing_in_ledger"]] == ["txn_re_late"]
    assert [(m["stripe_id"], m["field"]) for m in report["mismatches"]] == [
        ("ch_d", "fee"),
        ("ch_d", "net"),
    ]
    assert [u["balance_transaction"] for u in report["unknown_to_stripe"]] == ["txn_ghost"]
    assert [p["ties_out"] for p in report["payouts"]] == [False]
    assert report["unsettled"] == []
    assert report["differences"] == 1 + 2 + 1 + 1
    with database.session() as session:
        assert session.query(SyncRun).count() == 2


def test_a_sync_stopped_half_way_ends_like_one_uninterrupted_run(
    app: Flask,
    app_config: dict[str, Any],
    runner: FlaskCliRunner,
    stripe_http: responses.RequestsMock,
    tmp_path: Path,
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    # subscriptions, invoices, invoice payments, one page of charges (and the
    # refunds of the charge that says it was refunded)
    fake.fail_after = 5

    stopped = runner.invoke(main, ["stripe", "sync", *WINDOW, "--json"])
    assert stopped.exit_code == 1
    assert "error:" in stopped.output and "Traceback" not in stopped.output
    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        done = {c.resource for c in session.query(SyncCursor) if c.done}
    assert {"subscriptions", "invoices", "invoice_payments", "charges"} <= done

    fake.fail_after = None
    calls_before = len(fake.calls)
    code, report = sync(runner)
    assert (code, report["differences"]) == (0, 0)
    resumed = fake.calls[calls_before:]
    assert not [c for c in resumed if c.startswith(("/v1/subscriptions", "/v1/charges?"))]
    with database.session() as session:
        assert session.query(SyncCursor).count() == 0  # a finished window forgets its place

    # The same ledger as one uninterrupted run on an empty database.
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(fresh_url)
    fresh = create_app({**app_config, "DATABASE_URL": fresh_url})
    try:
        result = fresh.test_cli_runner().invoke(main, ["stripe", "sync", *WINDOW, "--json"])
        assert result.exit_code == 0, result.output
        assert journal(fresh) == journal(app)
    finally:
        fresh.extensions["donations.db"].dispose()


@pytest.mark.settings(STRIPE_SYNC_MAX_RETRIES=3)
def test_a_429_is_waited_out_and_the_sync_goes_on(
    app: Flask, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    fake.rate_limited = 2  # the first two calls: 1 s, then 2 s of back-off

    code, report = sync(runner)

    assert (code, report["differences"]) == (0, 0)
    assert fake.calls[0] == fake.calls[1] == fake.calls[2]


def test_a_payout_page_shows_what_the_bank_deposit_holds_with_its_csv(
    app: Flask, db: Session, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    assert sync(runner)[0] == 0
    finance = login(app, db, "finance")

    page = finance.get("/ledger/payouts/po_1")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "ties out with the payout" in text
    for stripe_id in ("ch_a", "ch_m", "re_a", "ch_d", "dp_d", "txn_fee"):
        assert stripe_id in text

    csv = finance.get("/ledger/payouts/po_1.csv")
    assert csv.status_code == 200
    lines = csv.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == ",".join(ledger.CSV_COLUMNS)
    assert sorted(line.rsplit(",", 1)[1] for line in lines[1:]) == sorted(
        ["ch_a", "ch_m", "re_a", "ch_d", "dp_d", "txn_fee"]
    )
    assert (
        sum(Decimal(line.split(",")[7]) for line in lines[1:])
        == Decimal(
            fake.find("po_1")["amount"]  # type: ignore[index]
        )
        / 100
    )

    assert finance.get("/ledger/payouts/po_nope").status_code == 404
    assert finance.get("/ledger/payouts/%00").status_code == 400  # a control character
    viewer = login(app, db, "viewer")
    assert viewer.get("/ledger/payouts/po_1").status_code == 403
    reconciliation = finance.get("/ledger/reconciliation").get_data(as_text=True)
    assert "no differences" in reconciliation and "po_1" in reconciliation


@pytest.mark.settings(
    STRIPE_SYNC_REQUESTS_PER_SECOND=0, STRIPE_SYNC_MAX_RETRIES=0, STRIPE_SYNC_EVERY_HOURS=24
)
def test_a_worker_runs_the_asked_for_reconciliation_and_the_daily_one_once(
    app: Flask, db: Session, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    finance = login(app, db, "finance")
    form = finance.get("/ledger/reconciliation").get_data(as_text=True)
    token = CSRF_FIELD.search(form)
    assert token
    asked = finance.post(
        "/ledger/reconciliation/run",
        data={"csrf_token": token.group(1), "since": "2026-09-21", "until": "2026-09-28"},
    )
    assert asked.status_code == 303
    database: Database = app.extensions["donations.db"]
    payments = app.extensions["donations.payments"]

    with app.app_context():
        asked_run = run_due(database, payments, app.extensions["donations.webhooks"], app.config)
        assert asked_run is not None and asked_run.differences == 0
        with database.session() as session:
            request_row = session.scalars(select(SyncRequest)).one()
            assert request_row.sync_run_id == asked_run.id
        # The daily run was done by that one; nothing is due until tomorrow.
        assert run_due(database, payments, app.extensions["donations.webhooks"], app.config) is None
    assert "no differences" in finance.get("/ledger/reconciliation").get_data(as_text=True)


@pytest.mark.settings(
    STRIPE_SYNC_REQUESTS_PER_SECOND=0,
    STRIPE_SYNC_MAX_RETRIES=0,
    STRIPE_SYNC_EVERY_HOURS=24,
    STRIPE_SYNC_LOOKBACK_DAYS=5,
)
def test_an_interrupted_scheduled_run_is_finished_by_the_next_and_leaves_no_cursors(
    app: Flask, stripe_http: responses.RequestsMock
) -> None:
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    database: Database = app.extensions["donations.db"]
    payments = app.extensions["donations.payments"]
    hooks = app.extensions["donations.webhooks"]
    first = datetime.fromtimestamp(T0, UTC) + timedelta(days=4)
    fake.fail_after = 5  # Stripe goes down part way through the lists
    with app.app_context(), frozen_at(first), pytest.raises(PaymentsError):
        run_due(database, payments, hooks, app.config)
    with database.session() as session:
        left = {(c.window, c.resource, c.done) for c in session.scalars(select(SyncCursor))}
        # An older interrupted scheduled run's place, superseded by this one's.
        session.add(
            SyncCursor(
                window=f"scheduled:{T0 - 10 * DAY}..",
                resource="charges",
                starting_after="ch_gone",
                done=False,
            )
        )
        session.commit()
    stopped_key = f"scheduled:{int(first.timestamp()) - 5 * DAY}.."
    assert {window for window, _, _ in left} == {stopped_key}
    assert ("subscriptions", True) in {(resource, done) for _, resource, done in left}

    fake.fail_after = None
    calls_before = len(fake.calls)
    # Nothing finished, so the schedule is still due an hour later: the stopped
    # window is finished from its cursors (its done lists are not read again),
    # then the hour's own window runs.
    with app.app_context(), frozen_at(first + timedelta(hours=1)):
        fresh = run_due(database, payments, hooks, app.config)
    assert fresh is not None and fresh.differences == 0
    subscription_lists = [c for c in fake.calls[calls_before:] if c.startswith("/v1/subscriptions")]
    assert len(subscription_lists) == 1  # the hour's window; the stopped one had them done
    with database.session() as session:
        assert session.scalars(select(SyncCursor)).all() == []
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        assert [(run.report_only, run.differences) for run in runs] == [(False, 0), (False, 0)]
        assert ledger.verify(session) == []


def test_fees_still_unknown_are_settled_from_the_balance_transaction_list(
    app: Flask, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    """A gift whose charge.updated never came: the charge was recognised from
    charge.succeeded (no balance transaction yet); the sync's listing of
    balance transactions settles it, with no call per charge."""
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    database: Database = app.extensions["donations.db"]
    unsettled = dict(fake.find("ch_a") or {}, balance_transaction=None)
    with database.session() as session:
        apply_event(
            session, make_event("charge.succeeded", unsettled), app.extensions["donations.payments"]
        )
        session.commit()
    fake.objects["charges"] = [c for c in fake.objects["charges"] if c["id"] != "ch_a"]

    code, report = sync(runner)

    assert (code, report["differences"]) == (0, 0), report
    assert not [
        c for c in fake.calls if c.startswith(("/v1/charges/", "/v1/balance_transactions/"))
    ]
    with database.session() as session:
        assert ledger.entry_exists(session, "balance_transaction:txn_a")


def test_a_refund_only_the_balance_transaction_list_shows_is_fetched_and_posted(
    app: Flask, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    """The refund was made the day before the window (so the window's refund
    list leaves it out) and its money moved inside it: the report fetches the
    refund and posts it through the refund handler, with the listing's figures,
    instead of only listing it as missing."""
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    assert sync(runner)[0] == 0
    t_late = txn("txn_re_late", -500, 0, "re_late", T0 + 4 * DAY, type="refund")
    fake.add("balance_transactions", t_late)
    fake.add(
        "refunds",
        ef.refund(
            "re_late",
            charge_id="ch_m",
            amount=500,
            created=T0 + 3 * DAY,
            balance_transaction="txn_re_late",
        ),
    )
    narrow = ["--since", "2026-09-25", "--until", "2026-09-28"]
    calls_before = len(fake.calls)

    result = runner.invoke(main, ["stripe", "sync", *narrow, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["differences"] == 0 and report["missing_in_ledger"] == []
    assert ("refund", "re_late", "-500") in kinds(app)
    fetched = [c for c in fake.calls[calls_before:] if c.startswith("/v1/refunds/")]
    assert fetched == ["/v1/refunds/re_late"]
    assert not [c for c in fake.calls if c.startswith("/v1/balance_transactions/")]
    before = journal(app)
    again = runner.invoke(main, ["stripe", "sync", *narrow, "--report-only", "--json"])
    assert again.exit_code == 0, again.output
    assert journal(app) == before


def last_sync_block(page: str) -> str:
    start = page.index('<section id="last-sync"')
    return page[start : page.index("</section>", start)]


def test_the_dashboard_shows_the_last_sync_and_a_difference_at_a_glance(
    app: Flask, db: Session, runner: FlaskCliRunner, stripe_http: responses.RequestsMock
) -> None:
    finance = login(app, db, "finance")
    assert "No sync with Stripe has run yet" in last_sync_block(
        finance.get("/ledger/").get_data(as_text=True)
    )
    fake = a_week_of_stripe()
    fake.install(stripe_http)
    assert sync(runner)[0] == 0

    block = last_sync_block(finance.get("/ledger/").get_data(as_text=True))
    assert "No differences" in block and "error-box" not in block
    assert "2026-09-21" in block and "2026-09-28" in block  # the window
    assert re.search(r"[1-9][0-9]* object\(s\) posted", block)

    fake.add(
        "balance_transactions", txn("txn_lost", -500, 0, "re_lost", T0 + 4 * DAY, type="refund")
    )
    assert sync(runner, "--report-only")[0] == 1

    block = last_sync_block(finance.get("/ledger/").get_data(as_text=True))
    assert 'class="error-box" role="alert"' in block
    assert "1 difference(s)" in block and "(report only)" in block
    assert 'href="/ledger/reconciliation"' in block
