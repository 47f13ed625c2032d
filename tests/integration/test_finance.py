"""The finance pages under /ledger, driven through HTTP as staff of each role,
on a ledger built from Stripe-shaped events applied by the real handlers
(tests/event_factory.py + webhooks.handlers.apply_event). The reporting zone
is America/New_York, and one gift lands just before local midnight."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ledger
from app.cli import main
from app.clock import frozen_at, utcnow
from app.db import Database
from app.donate.models import Checkout
from app.donors import Donor, find_or_create_donor
from app.ledger.records import Payment
from app.staff import AuditEntry, create_staff
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION
from webhooks.handlers import apply_event
from webhooks.inbox import StripeEvent, read_event, store_event
from webhooks.worker import RetryPolicy, process_next

PASSWORD = "correct horse battery staple"
ZONE = "America/New_York"
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
# 2026-10-01T03:30:00Z is 2026-09-30 23:30 in New York: September there, October in UTC.
LATE_GIFT_AT = int(datetime(2026, 10, 1, 3, 30, tzinfo=UTC).timestamp())
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
BOM = "\ufeff"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "LEDGER_REPORTING_TZ": ZONE}


@pytest.fixture(autouse=True)
def clock() -> Iterator[None]:
    with frozen_at(NOW):
        yield


@pytest.fixture
def database(app: Flask) -> Database:
    db: Database = app.extensions["donations.db"]
    return db


def apply_scenario(database: Database, scenario: ef.Scenario, mock: responses.RequestsMock) -> None:
    stripe = StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)
    scenario.stub(mock)
    for event in scenario.events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()


def add_checkout(db: Session, tag: str, *, campaign: str, source: str, status: str) -> None:
    donor = find_or_create_donor(db, f"{tag}@example.org", "Ada Reader")
    db.add(
        Checkout(
            id=f"co_{tag}",
            donor_id=donor.id,
            email=donor.email,
            name=donor.name,
            frequency="once",
            currency="usd",
            amount_minor=2500,
            total_minor=2500,
            campaign=campaign,
            utm_source=source,
            stripe_checkout_session_id=f"cs_{tag}",
            status=status,
            created_at=datetime(2026, 9, 21, tzinfo=UTC),
        )
    )
    db.commit()


@pytest.fixture
def filled(database: Database, db: Session, stripe_http: responses.RequestsMock) -> ef.Scenario:
    """September (New York): a 25.00 gift through the "spring" campaign with a
    10.00 refund, a monthly membership (10.00), a 50.00 gift at 23:30 on the
    30th, a lost dispute, a payout; one checkout that expired."""
    add_checkout(db, "fin", campaign="spring", source="newsletter", status="open")
    add_checkout(db, "gone", campaign="spring", source="newsletter", status="expired")
    once = ef.one_time_donation("fin", name="Ada Reader")
    member = ef.membership("finm", renewals=0, start=ef.T0 + 100)
    refund = ef.partial_refunds(once.facts["charge_object"], [1000], start=ef.T0 + ef.DAY)
    late = ef.one_time_donation("late", amount=5000, start=LATE_GIFT_AT - 10)
    lost = ef.dispute_lost(member.facts["charges"][0], 1000, start=ef.T0 + 2 * ef.DAY, tag="fd")
    payout = ef.payout_paid("fin", 2000, start=ef.T0 + 4 * ef.DAY)
    scenario = once + member + refund + late + lost + payout
    apply_scenario(database, scenario, stripe_http)
    with database.session() as session:
        assert ledger.verify(session) == []
    return scenario


def login(app: Flask, db: Session, role: str) -> FlaskClient:
    email = f"{role}@newsroom.test"
    create_staff(
        db,
        email=email,
        role=role,
        password=PASSWORD,
        hasher=app.extensions["donations.password_hasher"],
    )
    db.commit()
    client = app.test_client()
    token = CSRF_FIELD.search(client.get("/login").get_data(as_text=True))
    assert token
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


@pytest.fixture
def finance(app: Flask, db: Session) -> FlaskClient:
    return login(app, db, "finance")


@pytest.fixture
def viewer(app: Flask, db: Session) -> FlaskClient:
    return login(app, db, "viewer")


@pytest.fixture
def admin(app: Flask, db: Session) -> FlaskClient:
    return login(app, db, "admin")


def csrf_from(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match
    return match.group(1)


def donor_id(db: Session, email: str) -> int:
    found = db.scalar(select(Donor.id).where(Donor.email == email))
    assert found is not None
    return int(found)


PAGES = (
    "/ledger/",
    "/ledger/journal",
    "/ledger/journal?since=",
    "/ledger/donors",
    "/ledger/donors?q=fin",
    "/ledger/memberships",
    "/ledger/campaigns",
    "/ledger/events",
)


# -- every page, empty and with data ----------------------------------------------------


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_every_page_renders_for_finance_and_admin_on_an_empty_ledger_with_what_to_do(
    app: Flask, db: Session, role: str
) -> None:
    client = login(app, db, role)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
    dashboard = client.get("/ledger/").get_data(as_text=True)
    assert "No payments yet." in dashboard
    assert "donations worker --once" in dashboard
    assert "No payments yet." in client.get("/ledger/journal").get_data(as_text=True)
    assert "No events" in client.get("/ledger/events").get_data(as_text=True)
    assert "No memberships" in client.get("/ledger/memberships").get_data(as_text=True)
    assert "No campaigns yet" in client.get("/ledger/campaigns").get_data(as_text=True)


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_every_page_renders_for_finance_and_admin_with_data(
    app: Flask, db: Session, filled: ef.Scenario, role: str
) -> None:
    client = login(app, db, role)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "No payments yet." not in response.get_data(as_text=True), path
    member = donor_id(db, "finm@example.org")
    page = client.get(f"/ledger/donors/{member}").get_data(as_text=True)
    assert "finm@example.org" in page
    assert "sub_finm" in page
    assert "dispute" in page
    assert "$10.00" in page


def test_a_donor_that_does_not_exist_is_a_404(finance: FlaskClient) -> None:
    assert finance.get("/ledger/donors/999999").status_code == 404


def test_nobody_without_a_login_sees_any_finance_page(client: FlaskClient) -> None:
    for path in (*PAGES, "/ledger/journal.csv", "/ledger/export.csv", "/ledger/donors/1"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]


# -- the viewer role ------------------------------------------------------------------------


def test_a_viewer_reads_totals_and_lists_but_never_a_donor_email(
    viewer: FlaskClient, filled: ef.Scenario, db: Session
) -> None:
    paths = [
        *PAGES,
        "/ledger/journal?since=2026-09-01",
        f"/ledger/donors/{donor_id(db, 'fin@example.org')}",
        "/ledger/donors?q=Ada",
    ]
    for path in paths:
        response = viewer.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        assert "@example.org" not in page, path
        assert ".csv" not in page, path  # no export links
    assert "Ada Reader" in viewer.get("/ledger/donors?q=Ada").get_data(as_text=True)


def test_a_viewer_cannot_find_donors_by_email(viewer: FlaskClient, filled: ef.Scenario) -> None:
    page = viewer.get("/ledger/donors?q=fin@example").get_data(as_text=True)
    assert "No donor matches" in page
    assert viewer.get("/ledger/journal?donor=fin@example.org").status_code == 400


def test_a_viewer_gets_403_on_every_csv(viewer: FlaskClient, filled: ef.Scenario) -> None:
    assert viewer.get("/ledger/export.csv").status_code == 403
    assert viewer.get("/ledger/journal.csv").status_code == 403
    assert viewer.get("/ledger/journal.csv?since=").status_code == 403


# -- journal ----------------------------------------------------------------------------------


def journal_ids(page: str) -> list[str]:
    return re.findall(r'<td class="mono">([a-z]+_[A-Za-z0-9_]+)</td>', page)


def test_the_journal_pages_by_keyset_without_overlap_and_back(
    app: Flask, finance: FlaskClient, filled: ef.Scenario, database: Database
) -> None:
    with database.session() as session:
        everything = [row.stripe_id for row in ledger.iter_rows(session)]
    assert len(everything) >= 6
    from app.finance import reports

    size = 2
    seen: list[str] = []
    after = None
    pages = []
    with database.session() as session:
        while True:
            page = reports.journal_page(session, reports.JournalFilter(), after=after, size=size)
            pages.append(page)
            seen.extend(line.row.stripe_id for line in page.lines)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert seen == everything  # every row once, in the export's order
        back = reports.journal_page(
            session, reports.JournalFilter(), before=pages[-1].previous_cursor, size=size
        )
        assert [x.row.stripe_id for x in back.lines] == [x.row.stripe_id for x in pages[-2].lines]

    first = finance.get("/ledger/journal?since=").get_data(as_text=True)
    assert journal_ids(first) == everything  # all fit on one page of 50
    assert 'rel="next"' not in first and 'rel="prev"' not in first


def test_the_journal_over_http_follows_next_and_previous_links(
    finance: FlaskClient, filled: ef.Scenario, database: Database
) -> None:
    from app.finance import reports

    with database.session() as session:
        everything = [row.stripe_id for row in ledger.iter_rows(session)]
        page = reports.journal_page(session, reports.JournalFilter(), size=3)
    assert page.next_cursor is not None
    response = finance.get(f"/ledger/journal?since=&after={page.next_cursor.encode()}")
    second = journal_ids(response.get_data(as_text=True))
    assert second == everything[3:]
    html = response.get_data(as_text=True)
    previous = re.search(r'href="([^"]+)" rel="prev"', html)
    assert previous
    back = finance.get(previous.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert journal_ids(back) == everything[:3]


def test_the_journal_filters_by_dates_in_the_reporting_zone_kind_currency_campaign_and_donor(
    finance: FlaskClient, filled: ef.Scenario, db: Session
) -> None:
    def ids(query: str) -> list[str]:
        response = finance.get(f"/ledger/journal?{query}")
        assert response.status_code == 200, query
        return journal_ids(response.get_data(as_text=True))

    september = ids("since=2026-09-01&until=2026-10-01")
    assert "ch_late" in september  # 23:30 on the 30th in New York
    assert ids("since=2026-10-01") == []  # nothing after that, locally
    assert ids("since=&kind=refund") == [filled.facts["refunds"][0]]
    assert ids("since=&kind=donation") == ["ch_fin", "ch_late"]
    assert ids("since=&campaign=spring") == ["ch_fin", filled.facts["refunds"][0]]
    assert ids("since=&currency=eur") == []
    member = donor_id(db, "finm@example.org")
    by_id = ids(f"since=&donor={member}")
    assert by_id == ids("since=&donor=finm@example.org")
    assert by_id[0] == "ch_finm_0" and len(by_id) == 2  # the payment and its dispute
    assert finance.get("/ledger/journal?since=2026-13-01").status_code == 400
    assert finance.get("/ledger/journal?since=2026-09-02&until=2026-09-01").status_code == 400
    assert finance.get("/ledger/journal?after=not-a-cursor").status_code == 400


def test_the_journal_totals_cover_the_whole_filtered_set(
    finance: FlaskClient, filled: ef.Scenario, runner: FlaskCliRunner
) -> None:
    from app.finance import reports

    page = finance.get("/ledger/journal?since=2026-09-01&until=2026-10-01").get_data(as_text=True)
    result = runner.invoke(
        main, ["ledger", "summary", "--json", "--since", "2026-09-01", "--until", "2026-10-01"]
    )
    usd = json.loads(result.output)["currencies"]["usd"]
    for field in ("gross", "fees", "refunds", "disputes", "net"):
        assert f"${usd[field].lstrip('-')}" in page
    database: Database = finance.application.extensions["donations.db"]
    with database.session() as session:
        small = reports.journal_totals(session, reports.JournalFilter(kind="donation"))
        every = [r for r in ledger.iter_rows(session) if r.kind == "donation"]
    assert small["usd"].gross == sum(r.amount_minor for r in every) == 7500
    assert small["usd"].fees == sum(r.fee_minor or 0 for r in every)
    assert small["usd"].payments == 2


def test_the_journal_csv_holds_exactly_the_filtered_rows_and_is_audited(
    finance: FlaskClient, filled: ef.Scenario, db: Session, runner: FlaskCliRunner
) -> None:
    response = finance.get("/ledger/journal.csv?since=2026-09-01&until=2026-10-01&kind=donation")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    body = response.get_data(as_text=True)
    assert body.startswith(BOM)
    rows = [
        row[: len(ledger.CSV_COLUMNS)] for row in csv.reader(io.StringIO(body.removeprefix(BOM)))
    ]
    assert tuple(rows[0]) == ledger.CSV_COLUMNS
    exported = runner.invoke(
        main, ["ledger", "export", "--since", "2026-09-01", "--until", "2026-10-01"]
    ).output
    expected = [r for r in csv.reader(io.StringIO(exported))][1:]
    assert rows[1:] == [r for r in expected if r[1] == "donation"]
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "export")).all()
    assert len(audit) == 1
    assert json.loads(audit[0].detail)["what"] == "journal"


# -- the whole export ----------------------------------------------------------------------


def test_export_csv_is_the_cli_export_with_a_bom_streamed_as_an_attachment_and_audited(
    finance: FlaskClient, filled: ef.Scenario, runner: FlaskCliRunner, db: Session, tmp_path: Path
) -> None:
    response = finance.get("/ledger/export.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert 'attachment; filename="ledger-' in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())
    assert raw.decode("utf-8").removeprefix(BOM).splitlines()[0] == ",".join(ledger.CSV_COLUMNS)
    whole = tmp_path / "whole.csv"
    assert runner.invoke(main, ["ledger", "export", "-o", str(whole)]).exit_code == 0
    assert raw == BOM.encode() + whole.read_bytes()

    since = finance.get("/ledger/export.csv?since=2026-09-30&until=2026-10-01").get_data()
    day = tmp_path / "day.csv"
    runner.invoke(
        main, ["ledger", "export", "--since", "2026-09-30", "--until", "2026-10-01", "-o", str(day)]
    )
    assert since == BOM.encode() + day.read_bytes()
    assert b",ch_late\r\n" in since and b",ch_fin\r\n" not in since
    details = [
        json.loads(a.detail)
        for a in db.scalars(
            select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)
        )
    ]
    assert details == [
        {"what": "ledger"},
        {"what": "ledger", "since": "2026-09-30", "until": "2026-10-01"},
    ]
    assert finance.get("/ledger/export.csv?since=yesterday").status_code == 400


# -- dashboard ---------------------------------------------------------------------------------


def dashboard_figures(page: str, month: str, currency: str) -> dict[str, str]:
    row = re.search(rf'<tr data-month="{month}" data-currency="{currency}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {month} {currency}"
    return dict(re.findall(r'data-field="(\w+)" data-plain="([^"]+)"', row.group(1)))


def test_dashboard_month_totals_equal_the_cli_summary_for_that_month_in_the_reporting_zone(
    finance: FlaskClient, filled: ef.Scenario, runner: FlaskCliRunner
) -> None:
    page = finance.get("/ledger/").get_data(as_text=True)
    result = runner.invoke(
        main, ["ledger", "summary", "--json", "--since", "2026-09-01", "--until", "2026-10-01"]
    )
    summary = json.loads(result.output)["currencies"]["usd"]
    shown = dashboard_figures(page, "2026-09-01", "usd")
    assert shown == {k: summary[k] for k in ("gross", "fees", "refunds", "disputes", "net")}
    assert shown["gross"] == "85.00"  # 25 + 10 + 50: the late gift counts in September
    assert 'data-month="2026-10-01" data-currency' not in page  # nothing in October locally


def test_dashboard_shows_members_mrr_latest_payments_pipeline_and_an_accessible_chart(
    finance: FlaskClient, filled: ef.Scenario
) -> None:
    page = finance.get("/ledger/").get_data(as_text=True)
    assert "<svg" in page and '<title id="chart-usd-title">' in page
    assert '<table class="data chart-table"' in page
    assert "$10.00" in page  # MRR of the one monthly member
    assert "ch_late" in page  # among the latest payments
    assert "0 waiting · 0 failed · 0 dead" in page
    assert "<script" not in page


# -- memberships and campaigns ------------------------------------------------------------------


def test_memberships_page_counts_by_status_and_filters_the_list(
    finance: FlaskClient, filled: ef.Scenario
) -> None:
    page = finance.get("/ledger/memberships").get_data(as_text=True)
    assert "finm@example.org" in page
    assert "$10.00" in page
    canceled = finance.get("/ledger/memberships?status=canceled").get_data(as_text=True)
    assert "finm@example.org" not in canceled
    assert "No memberships match these filters" in canceled


def test_campaigns_page_shows_totals_by_campaign_and_source_and_checkout_conversion(
    finance: FlaskClient, filled: ef.Scenario
) -> None:
    page = finance.get("/ledger/campaigns").get_data(as_text=True)
    row = re.search(r"<tr>\s*<th scope=\"row\"><a [^>]*>spring</a></th>(.*?)</tr>", page, re.S)
    assert row
    cells = re.findall(r'<td class="num">(.*?)</td>', row.group(1))
    # gross 25.00, net 25.00 - fee - 10.00 refund, 1 payment; 2 checkouts: 1 completed, 1 expired
    assert cells[0] == "$25.00"
    assert cells[2] == "1"
    assert cells[3:6] == ["2", "1", "1"]
    assert cells[6] == "50.00 %"


# -- events and replay --------------------------------------------------------------------------


@pytest.fixture
def dead_event(app: Flask, database: Database, db: Session) -> tuple[StripeEvent, ef.Scenario]:
    """A stored charge.updated whose balance transaction look-up failed (no
    stub yet): dead after its one attempt."""
    scenario = ef.one_time_donation("dead")
    event = scenario.events[-1]
    payload = json.dumps(event)
    store_event(db, read_event(payload, event), skipped=False, now=utcnow())
    db.commit()
    outcome = process_next(
        database, app.extensions["donations.payments"], RetryPolicy(max_attempts=1)
    )
    assert outcome is not None and outcome.status == "dead"
    row = db.scalars(select(StripeEvent)).one()
    db.refresh(row)
    return row, scenario


def test_events_page_lists_and_filters_the_inbox_with_errors(
    finance: FlaskClient, dead_event: tuple[StripeEvent, ef.Scenario]
) -> None:
    event, _ = dead_event
    page = finance.get("/ledger/events").get_data(as_text=True)
    assert event.stripe_event_id in page
    assert '<span class="label">Dead</span><span class="value">1</span>' in page
    assert "PaymentsError" in page  # the error kept on the event
    assert "Replay" not in page  # finance may not replay
    assert event.stripe_event_id in finance.get("/ledger/events?status=dead").get_data(as_text=True)
    assert event.stripe_event_id not in finance.get("/ledger/events?status=processed").get_data(
        as_text=True
    )
    assert event.stripe_event_id in finance.get("/ledger/events?type=charge.updated").get_data(
        as_text=True
    )


def test_replay_is_for_admins_only(
    finance: FlaskClient, viewer: FlaskClient, dead_event: tuple[StripeEvent, ef.Scenario]
) -> None:
    event, _ = dead_event
    for client in (finance, viewer):
        assert client.get(f"/ledger/events/{event.id}/replay").status_code == 403
        assert client.get("/ledger/events/replay-failed").status_code == 403
        token = csrf_from(client.get("/ledger/account/password").get_data(as_text=True))
        response = client.post(
            f"/ledger/events/{event.id}/replay", data={"confirm": "yes", "csrf_token": token}
        )
        assert response.status_code == 403


def test_replay_needs_confirmation_and_a_csrf_token_and_is_audited(
    admin: FlaskClient,
    dead_event: tuple[StripeEvent, ef.Scenario],
    db: Session,
    stripe_http: responses.RequestsMock,
) -> None:
    event, scenario = dead_event
    confirm = admin.get(f"/ledger/events/{event.id}/replay")
    assert confirm.status_code == 200
    html = confirm.get_data(as_text=True)
    assert "Yes, replay it" in html
    token = csrf_from(html)

    no_csrf = admin.post(f"/ledger/events/{event.id}/replay", data={"confirm": "yes"})
    assert no_csrf.status_code == 400
    unconfirmed = admin.post(f"/ledger/events/{event.id}/replay", data={"csrf_token": token})
    assert unconfirmed.status_code == 200  # the confirmation page again, nothing done
    db.rollback()  # a fresh snapshot: the app committed in its own session
    db.refresh(event)
    assert event.status == "dead"
    assert db.scalars(select(AuditEntry).where(AuditEntry.action == "replay")).all() == []

    scenario.stub(stripe_http)
    done = admin.post(
        f"/ledger/events/{event.id}/replay", data={"confirm": "yes", "csrf_token": token}
    )
    assert done.status_code == 303
    db.rollback()  # a fresh snapshot: the app committed in its own session
    db.refresh(event)
    assert event.status == "processed"
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "replay")).one()
    assert json.loads(audit.detail) == {"events": [event.stripe_event_id]}
    assert "processed" in admin.get("/ledger/events").get_data(as_text=True)


def test_replay_of_every_failed_event_confirms_first_and_is_audited(
    admin: FlaskClient,
    dead_event: tuple[StripeEvent, ef.Scenario],
    db: Session,
    stripe_http: responses.RequestsMock,
) -> None:
    event, scenario = dead_event
    page = admin.get("/ledger/events/replay-failed").get_data(as_text=True)
    assert event.stripe_event_id in page
    token = csrf_from(page)
    assert admin.post("/ledger/events/replay-failed", data={"confirm": "yes"}).status_code == 400
    scenario.stub(stripe_http)
    response = admin.post(
        "/ledger/events/replay-failed", data={"confirm": "yes", "csrf_token": token}
    )
    assert response.status_code == 303
    db.rollback()  # a fresh snapshot: the app committed in its own session
    db.refresh(event)
    assert event.status == "processed"
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "replay")).one()
    assert json.loads(audit.detail) == {"events": [event.stripe_event_id], "failed": True}


# -- what donors wrote: dedication, comment, anonymity (finance and admin only) --------


def add_notes(db: Session) -> None:
    checkout = db.get(Checkout, "co_fin")
    assert checkout is not None
    checkout.dedication_kind = "memory"
    checkout.dedication_name = "Grandma Ada"
    checkout.comment = "=HYPERLINK(keep up the good work)"
    checkout.anonymous = True
    db.commit()


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_finance_and_admin_see_what_the_donor_wrote_on_the_journal_and_donor_pages(
    app: Flask, db: Session, filled: ef.Scenario, role: str
) -> None:
    add_notes(db)
    client = login(app, db, role)
    donor = donor_id(db, "fin@example.org")
    for path in ("/ledger/journal?since=2026-09-01", f"/ledger/donors/{donor}"):
        page = client.get(path).get_data(as_text=True)
        assert "In memory of Grandma Ada" in page, path
        assert "=HYPERLINK(keep up the good work)" in page, path
        assert "Don't show my name" in page, path


def test_a_viewer_never_sees_what_the_donor_wrote(
    viewer: FlaskClient, db: Session, filled: ef.Scenario
) -> None:
    add_notes(db)
    donor = donor_id(db, "fin@example.org")
    for path in ("/ledger/journal?since=2026-09-01", f"/ledger/donors/{donor}"):
        page = viewer.get(path).get_data(as_text=True)
        assert "Grandma Ada" not in page and "good work" not in page, path
        assert "Don't show my name" not in page, path


def test_the_journal_csv_appends_what_the_donor_wrote_after_the_contracts_columns(
    finance: FlaskClient, filled: ef.Scenario, db: Session, runner: FlaskCliRunner
) -> None:
    add_notes(db)
    body = finance.get("/ledger/journal.csv?since=&kind=donation").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body.removeprefix(BOM))))
    width = len(ledger.CSV_COLUMNS)
    assert tuple(rows[0][:width]) == ledger.CSV_COLUMNS
    assert rows[0][width:] == ["dedication_kind", "dedication_name", "comment", "anonymous"]
    by_id = {row[16]: row for row in rows[1:]}
    assert by_id["ch_fin"][width:] == [
        "memory",
        "Grandma Ada",
        "'=HYPERLINK(keep up the good work)",
        "yes",
    ]
    assert by_id["ch_late"][width:] == ["", "", "", ""]
    # The contract's columns are the ledger CSV's, row for row.
    exported = runner.invoke(main, ["ledger", "export"]).output
    expected = [r for r in csv.reader(io.StringIO(exported))][1:]
    assert [row[:width] for row in rows[1:]] == [r for r in expected if r[1] == "donation"]


def test_the_ledger_csv_stays_the_contracts_columns_only(
    finance: FlaskClient, filled: ef.Scenario, db: Session
) -> None:
    add_notes(db)
    body = finance.get("/ledger/export.csv").get_data(as_text=True)
    assert body.removeprefix(BOM).splitlines()[0] == ",".join(ledger.CSV_COLUMNS)
    assert "Grandma" not in body and "good work" not in body


# -- the dashboard's period -------------------------------------------------------------

PERIOD = re.compile(r'<section id="period".*?</section>', re.S)
PERIOD_GROSS = re.compile(r'data-currency="usd".*?data-field="gross"[^>]*>([^<]+)<', re.S)
PERIOD_DONORS = re.compile(r'data-field="new-donors">(\d+)<')


@pytest.mark.parametrize(
    ("query", "gross", "new_donors"),
    [
        ("", None, 0),  # October in New York: nothing has moved yet
        ("?period=month", None, 0),
        ("?period=quarter", None, 0),
        ("?period=year", "$85.00", 3),
        ("?period=custom&since=2026-09-01&until=2026-10-01", "$85.00", 3),
        ("?period=custom&since=2026-09-30", "$50.00", 1),  # the late gift, 23:30 on the 30th
    ],
)
def test_the_dashboard_shows_the_figures_of_the_chosen_period(
    finance: FlaskClient, filled: ef.Scenario, query: str, gross: str | None, new_donors: int
) -> None:
    response = finance.get(f"/ledger/{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    section = PERIOD.search(page)
    assert section
    found = PERIOD_GROSS.search(section.group(0))
    assert (found.group(1) if found else None) == gross
    donors = PERIOD_DONORS.search(page)
    assert donors and int(donors.group(1)) == new_donors
    assert '<select name="period"' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [("?period=week", "'week' is not a period"), ("?period=custom&since=2026-13-01", "not a date")],
)
def test_a_bad_period_is_a_400_next_to_the_period_form(
    finance: FlaskClient, query: str, message: str
) -> None:
    response = finance.get(f"/ledger/{query}")
    assert response.status_code == 400
    page = response.get_data(as_text=True).replace("&#39;", "'")
    assert re.search(
        r'class="filters".*?</form>\s*<p class="error-box"[^>]*>[^<]*' + re.escape(message),
        page,
        re.S,
    )


# -- the donor list: by lifetime giving or last gift, per currency ------------------------

RANKED = re.compile(r'<tr data-donor="(\d+)">')


def test_the_donor_list_sorts_by_lifetime_giving_and_by_last_gift_per_currency(
    finance: FlaskClient, filled: ef.Scenario, db: Session
) -> None:
    ids = {email: donor_id(db, f"{email}@example.org") for email in ("fin", "finm", "late")}
    page = finance.get("/ledger/donors?sort=lifetime&currency=usd").get_data(as_text=True)
    assert [int(i) for i in RANKED.findall(page)] == [ids["late"], ids["fin"], ids["finm"]]
    assert "$50.00" in page and "$25.00" in page
    page = finance.get("/ledger/donors?sort=last_gift&currency=usd").get_data(as_text=True)
    assert [int(i) for i in RANKED.findall(page)] == [ids["late"], ids["finm"], ids["fin"]]
    assert RANKED.findall(finance.get("/ledger/donors?currency=eur").get_data(as_text=True)) == []


def test_the_donor_list_pages(finance: FlaskClient, filled: ef.Scenario, app: Flask) -> None:
    first = finance.get("/ledger/donors?sort=lifetime&currency=usd&size=2").get_data(as_text=True)
    assert len(RANKED.findall(first)) == 2
    assert "page=2" in first
    second = finance.get("/ledger/donors?sort=lifetime&currency=usd&size=2&page=2")
    assert len(RANKED.findall(second.get_data(as_text=True))) == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?sort=richest", "'richest' is not a sort order"),
        ("?currency=dollars", "'dollars' is not a currency"),
        ("?page=0", "page"),
        ("?page=99999", "page"),
    ],
)
def test_a_bad_donor_list_choice_is_a_400(finance: FlaskClient, query: str, message: str) -> None:
    response = finance.get(f"/ledger/donors{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True).replace("&#39;", "'")


def test_a_page_number_past_any_integer_is_a_400(finance: FlaskClient) -> None:
    assert finance.get("/ledger/donors?page=99999999999999999999999").status_code == 400


def test_the_donor_list_csv_is_for_finance_only_and_audited(
    finance: FlaskClient, viewer: FlaskClient, filled: ef.Scenario, db: Session
) -> None:
    assert viewer.get("/ledger/donors.csv?currency=usd").status_code == 403
    response = finance.get("/ledger/donors.csv?sort=lifetime&currency=usd")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).removeprefix(BOM))))
    assert rows[0] == [
        "donor_id",
        "donor_email",
        "donor_name",
        "currency",
        "lifetime_amount",
        "payments",
        "last_gift_at",
    ]
    assert [r[1] for r in rows[1:]] == ["late@example.org", "fin@example.org", "finm@example.org"]
    assert rows[1][3:6] == ["usd", "50.00", "1"]
    assert rows[1][6].endswith("Z")
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "export")).all()
    assert [json.loads(a.detail)["what"] for a in audit] == ["donors"]


def test_a_viewer_sees_the_donor_list_without_emails(
    viewer: FlaskClient, filled: ef.Scenario
) -> None:
    page = viewer.get("/ledger/donors?currency=usd").get_data(as_text=True)
    assert len(RANKED.findall(page)) == 3
    assert "@example.org" not in page


# -- failed payments ---------------------------------------------------------------------


def test_failed_payments_lists_failed_charges_and_invoices_whose_payment_failed(
    viewer: FlaskClient,
    finance: FlaskClient,
    database: Database,
    db: Session,
    stripe_http: responses.RequestsMock,
) -> None:
    renewal = ef.failed_renewal_then_retry("fr", amount=1500)
    declined_at = 1 + next(
        n for n, e in enumerate(renewal.events) if e["type"] == "invoice.payment_failed"
    )
    # Everything up to the subscription going past due; the retry has not come yet.
    partial = ef.Scenario(
        events=renewal.events[: declined_at + 1], stubs=renewal.stubs, facts=renewal.facts
    )
    apply_scenario(database, partial, stripe_http)
    gift = ef.one_time_donation("bounced", amount=4000)
    apply_scenario(database, gift, stripe_http)
    payment = db.scalar(select(Payment).where(Payment.stripe_charge_id == "ch_bounced"))
    assert payment is not None
    payment.status = "failed"  # a bank debit that failed after it had succeeded
    db.commit()

    page = finance.get("/ledger/failed-payments").get_data(as_text=True)
    assert "in_fr_r" in page and "$15.00" in page and "open" in page
    assert "ch_bounced" in page and "$40.00" in page
    assert "fr@example.org" in page
    hidden = viewer.get("/ledger/failed-payments").get_data(as_text=True)
    assert "in_fr_r" in hidden and "ch_bounced" in hidden
    assert "@example.org" not in hidden

    # Paid on retry: no longer failing.
    apply_scenario(
        database,
        ef.Scenario(
            events=renewal.events[declined_at + 1 :], stubs=renewal.stubs, facts=renewal.facts
        ),
        stripe_http,
    )
    assert "in_fr_r" not in finance.get("/ledger/failed-payments").get_data(as_text=True)


def test_failed_payments_says_when_there_are_none(finance: FlaskClient) -> None:
    page = finance.get("/ledger/failed-payments").get_data(as_text=True)
    assert "No failed payments" in page


def test_campaigns_page_has_a_subtotal_per_campaign_and_currency(
    finance: FlaskClient,
    filled: ef.Scenario,
    db: Session,
    database: Database,
    stripe_http: responses.RequestsMock,
) -> None:
    add_checkout(db, "soc", campaign="spring", source="social", status="complete")
    add_checkout(db, "eur", campaign="spring", source="social", status="complete")
    apply_scenario(database, ef.one_time_donation("soc", amount=1200), stripe_http)
    apply_scenario(database, ef.one_time_donation("eur", amount=700, currency="eur"), stripe_http)
    page = finance.get("/ledger/campaigns").get_data(as_text=True)
    subtotal = re.search(r'<tr class="subtotal" data-campaign="spring">(.*?)</tr>', page, re.S)
    assert subtotal, page
    cells = re.findall(r'<td class="num">(.*?)</td>', subtotal.group(1))
    # Gross per currency, never added across: $25.00 + $12.00 in USD, €7.00 apart.
    assert cells[0].split("<br>") == ["€7.00", "$37.00"]  # by currency code
    assert cells[2].split("<br>") == ["1", "2"]
    assert cells[3:6] == ["4", "3", "1"]  # checkouts created, completed, expired
