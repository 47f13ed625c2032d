"""app.finance.reports: reporting-zone months, figures, keyset cursors, and the
queries behind the finance pages, on ledgers built by the real handlers from
Stripe-shaped events (both database backends where a database is used)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import responses
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ledger
from app.clock import frozen_at
from app.db import Database
from app.donors import Donor, find_or_create_donor
from app.finance import reports
from app.ledger.records import Payment
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION
from webhooks.handlers import apply_event
from webhooks.inbox import StripeEvent, mark_processed, read_event, record_failure, store_event

KATHMANDU = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: no whole-hour shortcut works
NEW_YORK = ZoneInfo("America/New_York")


# -- pure functions ------------------------------------------------------------------


def test_a_day_starts_at_local_midnight_as_a_utc_instant() -> None:
    assert reports.day_start(date(2026, 10, 1), KATHMANDU) == datetime(
        2026, 9, 30, 18, 15, tzinfo=UTC
    )
    # New York changes from EDT to EST in November.
    assert reports.day_start(date(2026, 10, 1), NEW_YORK).hour == 4
    assert reports.day_start(date(2026, 12, 1), NEW_YORK).hour == 5


def test_a_moment_belongs_to_its_month_in_the_reporting_zone() -> None:
    just_before_local_midnight = datetime(2026, 9, 30, 18, 10, tzinfo=UTC)  # 23:55 in Kathmandu
    just_after = datetime(2026, 9, 30, 18, 20, tzinfo=UTC)
    assert reports.month_of(just_before_local_midnight, KATHMANDU) == date(2026, 9, 1)
    assert reports.month_of(just_after, KATHMANDU) == date(2026, 10, 1)


def test_the_dashboard_months_are_this_one_and_the_twelve_before_oldest_first() -> None:
    firsts = reports.month_firsts(datetime(2026, 1, 15, tzinfo=UTC), KATHMANDU)
    assert len(firsts) == 13
    assert firsts[0] == date(2025, 1, 1)
    assert firsts[-1] == date(2026, 1, 1)
    assert reports.add_months(date(2026, 12, 1), 1) == date(2027, 1, 1)
    assert reports.add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)


def test_days_are_read_as_the_cli_reads_them() -> None:
    assert reports.parse_day("2026-09-30") == date(2026, 9, 30)
    assert reports.parse_day("") is None
    assert reports.parse_day(None) is None
    for bad in ("2026-9-30", "30.09.2026", "2026-02-30", "yesterday"):
        with pytest.raises(reports.ReportError):
            reports.parse_day(bad)


def test_an_unknown_reporting_zone_is_a_clear_error() -> None:
    with pytest.raises(reports.ReportError, match="Mars/Olympus"):
        reports.reporting_zone("Mars/Olympus")
    assert reports.reporting_zone(None).key == "UTC"


def test_mrr_adds_monthly_amounts_and_a_twelfth_of_yearly_ones_rounded_half_up() -> None:
    assert reports.monthly_amount(1000, 0) == 1000
    assert reports.monthly_amount(0, 12000) == 1000
    assert reports.monthly_amount(0, 1006) == 84  # 83.83 -> 84
    assert reports.monthly_amount(0, 1002) == 84  # 83.5 -> 84 (half up)
    assert reports.monthly_amount(0, 1001) == 83  # 83.42 -> 83
    assert reports.monthly_amount(500, 0) == 500


def test_figures_follow_the_summary_definitions() -> None:
    f = reports.Figures()
    f.add("donation", 2500, 103, 1)
    f.add("membership_payment", 1000, 59, 1)
    f.add("refund", -500, 0, 1)
    f.add("dispute", -1000, 1500, 1)
    f.add("stripe_fee", -200, 0, 1)
    f.add("adjustment", 30, 0, 1)
    f.add("payout", -2000, 0, 1)
    assert (f.gross, f.fees, f.refunds, f.disputes, f.other, f.payouts, f.payments) == (
        3500,
        103 + 59 + 1500 + 200,
        -500,
        -1000,
        30,
        -2000,
        2,
    )
    assert f.net == 3500 - 1862 - 500 - 1000 + 30


def test_a_journal_cursor_survives_a_round_trip_and_a_broken_one_is_refused() -> None:
    cursor = reports.Cursor(datetime(2026, 9, 30, 18, 10, 5, 123456, tzinfo=UTC), "charge:ch_1")
    assert reports.Cursor.decode(cursor.encode()) == cursor
    assert reports.Cursor.decode("") is None
    for broken in ("%%%", "bm90IGEgY3Vyc29y", "MjAyNi0wOS0zMFQxODoxMDowNQpr"):
        with pytest.raises(reports.ReportError):
            reports.Cursor.decode(broken)


def test_churn_and_conversion_are_rounded_half_up_in_basis_points() -> None:
    stats = reports.MembershipStats({}, 0, {}, churned_this_month=1, active_at_month_start=3)
    assert stats.churn_basis_points == 3333
    assert reports.MembershipStats({}, 0, {}, 0, 0).churn_basis_points is None
    line = reports.CampaignLine("spring", None, created=3, completed=2)
    assert line.conversion_basis_points == 6667


# -- queries --------------------------------------------------------------------------


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


def at(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def kathmandu_ledger(database: Database, stripe_http: responses.RequestsMock) -> ef.Scenario:
    """Gifts in three months (one at 23:55 on 30 September in Kathmandu,
    which is still September there), a euro gift, a refund, a lost dispute,
    a yearly membership and a payout."""
    late = ef.one_time_donation(
        "late", amount=4000, start=at(datetime(2026, 9, 30, 18, 10, tzinfo=UTC)) - 10
    )
    early = ef.one_time_donation(
        "early", amount=1500, start=at(datetime(2026, 9, 30, 18, 20, tzinfo=UTC)) - 10
    )
    august = ef.one_time_donation("aug", amount=2500, start=at(datetime(2026, 8, 3, tzinfo=UTC)))
    euro = ef.one_time_donation(
        "eur", amount=3000, currency="eur", start=at(datetime(2026, 9, 5, tzinfo=UTC))
    )
    refund = ef.partial_refunds(
        august.facts["charge_object"], [700], start=at(datetime(2026, 9, 2, tzinfo=UTC))
    )
    member = ef.membership(
        "year",
        interval="year",
        amount=12000,
        renewals=0,
        start=at(datetime(2026, 9, 10, tzinfo=UTC)),
    )
    lost = ef.dispute_lost(
        late.facts["charge"], 4000, start=at(datetime(2026, 10, 5, tzinfo=UTC)), tag="lost"
    )
    payout = ef.payout_paid("k", 3000, start=at(datetime(2026, 9, 20, tzinfo=UTC)))
    scenario = late + early + august + euro + refund + member + lost + payout
    apply_scenario(database, scenario, stripe_http)
    return scenario


def test_monthly_figures_equal_the_summary_of_each_month_in_a_non_utc_zone(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    now = datetime(2026, 10, 20, tzinfo=UTC)
    with database.session() as session:
        months = reports.monthly_figures(session, KATHMANDU, now)
        assert [m.first for m in months][-3:] == [
            date(2026, 8, 1),
            date(2026, 9, 1),
            date(2026, 10, 1),
        ]
        for month in months:
            since = reports.day_start(month.first, KATHMANDU)
            until = reports.day_start(reports.add_months(month.first, 1), KATHMANDU)
            expected = ef.settled_figures(ledger.summary(session, since, until))
            shown = {c: f.as_plain(c) for c, f in month.figures.items()}
            assert shown == expected, month.first
    september = months[-2].figures
    assert september["usd"].gross == 4000 + 12000  # the late gift and the yearly membership
    assert september["eur"].gross == 3000  # never added to dollars
    assert months[-1].figures["usd"].gross == 1500  # 00:05 on 1 October, Kathmandu
    assert months[-1].figures["usd"].disputes == -4000


def test_figures_between_equal_the_summary_over_all_time(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    with database.session() as session:
        figures = reports.figures_between(session, None, None)
        assert {c: f.as_plain(c) for c, f in figures.items()} == ef.settled_figures(
            ledger.summary(session)
        )


def test_new_donors_are_those_whose_first_payment_falls_in_the_month_in_the_reporting_zone(
    db: Session,
) -> None:
    def pay(donor: Donor, charge: str, at: datetime, kind: str = "donation") -> None:
        ledger.recognise_payment(
            db,
            charge_id=charge,
            kind=kind,
            currency="usd",
            amount_minor=1000,
            occurred_at=at,
            donor_id=donor.id,
        )

    with frozen_at(datetime(2024, 1, 1, tzinfo=UTC)):
        a, b, c, d, e, f = (find_or_create_donor(db, f"{n}@example.org") for n in "abcdef")
    pay(a, "ch_a", datetime(2026, 9, 30, 18, 10, tzinfo=UTC))  # 23:55, 30 Sep there
    pay(b, "ch_b", datetime(2026, 9, 30, 18, 20, tzinfo=UTC))  # 00:05, 1 Oct there
    pay(c, "ch_c", datetime(2026, 10, 19, tzinfo=UTC), "membership_payment")
    pay(c, "ch_c2", datetime(2026, 10, 19, 1, tzinfo=UTC))  # a second gift: counted once
    pay(d, "ch_d1", datetime(2025, 1, 1, tzinfo=UTC))  # first gave long before
    pay(d, "ch_d2", datetime(2026, 10, 2, tzinfo=UTC))  # not new in October
    # e only opened a checkout this month and never paid: not a donor yet.
    with frozen_at(datetime(2026, 10, 5, tzinfo=UTC)):
        find_or_create_donor(db, "g@example.org")
    del e, f
    db.commit()
    months = reports.monthly_figures(db, KATHMANDU, datetime(2026, 10, 20, tzinfo=UTC))
    assert [m.new_donors for m in months][-2:] == [1, 2]
    assert sum(m.new_donors for m in months) == 3
    october = [
        datetime(2026, 9, 30, 18, 15, tzinfo=UTC),
        datetime(2026, 10, 31, 18, 15, tzinfo=UTC),
    ]
    assert reports.new_donor_counts(db, october) == [2]  # one range: b and c
    assert reports.new_donor_counts(
        db, [datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)]
    ) == [0]


def test_closed_months_new_donors_are_kept_until_a_payment_dated_in_them_is_posted(
    db: Session,
) -> None:
    """The long span's first-payment aggregate and a month's own probes agree
    (named and unnamed payments alike), and FirstGifts reuses the closed
    months only while no payment dated before this month arrives."""

    def pay(donor: Donor | None, charge: str, at: datetime) -> None:
        ledger.recognise_payment(
            db,
            charge_id=charge,
            kind="donation",
            currency="usd",
            amount_minor=1000,
            occurred_at=at,
            donor_id=donor.id if donor else None,
        )

    with frozen_at(datetime(2024, 1, 1, tzinfo=UTC)):
        a, b, c, d = (find_or_create_donor(db, f"{n}@example.org") for n in "abcd")
    pay(a, "ch_a1", datetime(2026, 3, 3, tzinfo=UTC))
    pay(a, "ch_a2", datetime(2026, 6, 3, tzinfo=UTC))
    pay(b, "ch_b1", datetime(2026, 5, 5, tzinfo=UTC))
    pay(d, "ch_d1", datetime(2026, 10, 2, tzinfo=UTC))  # this month
    # Posted before its donor was known: the payment record names c.
    db.add(
        Payment(
            stripe_charge_id="ch_c1",
            donor_id=c.id,
            kind="once",
            amount_minor=1000,
            currency="usd",
            status="succeeded",
            stripe_created_at=datetime(2026, 4, 4, tzinfo=UTC),
        )
    )
    pay(None, "ch_c1", datetime(2026, 4, 4, tzinfo=UTC))
    pay(c, "ch_c2", datetime(2026, 7, 7, tzinfo=UTC))  # c's second: not new in July
    db.commit()

    zone = ZoneInfo("UTC")
    now = datetime(2026, 10, 20, tzinfo=UTC)
    firsts = reports.month_firsts(now, zone)
    bounds = [reports.day_start(f, zone) for f in [*firsts, reports.add_months(firsts[-1], 1)]]
    by_month = [reports.new_donor_counts(db, [s, e])[0] for s, e in pairwise(bounds)]
    kept = reports.FirstGifts()
    counts = kept.counts(db, bounds)
    assert counts == reports.new_donor_counts(db, bounds) == by_month
    new_in = {date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1), date(2026, 10, 1)}
    assert counts == [int(first in new_in) for first in firsts]
    assert kept.counts(db, bounds) == counts and len(kept.kept) == 1  # reused

    pay(d, "ch_d0", datetime(2026, 2, 2, tzinfo=UTC))  # a late webhook: d gave in February
    db.commit()
    moved = kept.counts(db, bounds)
    assert len(kept.kept) == 2  # not the kept counts: they were recomputed
    assert moved[firsts.index(date(2026, 2, 1))] == 1
    assert moved[-1] == 0  # d is no longer new this month
    assert moved == [reports.new_donor_counts(db, [s, e])[0] for s, e in pairwise(bounds)]


def test_journal_totals_equal_the_sum_of_the_filtered_rows(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    with database.session() as session:
        filters = reports.JournalFilter(currency="usd", kind="donation")
        totals = reports.journal_totals(session, filters)
        rows = [
            r for r in ledger.iter_rows(session) if r.currency == "usd" and r.kind == "donation"
        ]
        assert totals["usd"].gross == sum(r.amount_minor for r in rows) == 8000
        assert totals["usd"].fees == sum(r.fee_minor or 0 for r in rows)
        assert set(totals) == {"usd"}
        csv_rows = list(reports.journal_csv_rows(session, filters))
        assert csv_rows == [ledger.format_row(r) for r in rows]


def test_the_journal_pages_forward_and_back_without_overlap_or_gaps(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    with database.session() as session:
        everything = [r.stripe_id for r in ledger.iter_rows(session)]
        pages: list[reports.JournalPage] = []
        after = None
        while True:
            page = reports.journal_page(session, reports.JournalFilter(), after=after, size=3)
            pages.append(page)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        forward = [line.row.stripe_id for page in pages for line in page.lines]
        assert forward == everything
        assert all(len(page.lines) == 3 for page in pages[:-1])
        assert pages[0].previous_cursor is None
        # Back from the last page to the first.
        backward: list[str] = []
        before = pages[-1].previous_cursor
        while before is not None:
            page = reports.journal_page(session, reports.JournalFilter(), before=before, size=3)
            backward = [line.row.stripe_id for line in page.lines] + backward
            before = page.previous_cursor
        assert backward + [line.row.stripe_id for line in pages[-1].lines] == everything


def test_a_donor_history_has_lifetime_per_currency_memberships_and_every_movement(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    with database.session() as session:
        late = session.scalar(select(Donor.id).where(Donor.email == "late@example.org"))
        member = session.scalar(select(Donor.id).where(Donor.email == "year@example.org"))
        assert late is not None and member is not None
        history = reports.donor_history(session, late)
        assert history is not None
        assert [line.row.kind for line in history.lines] == ["donation", "dispute"]
        assert history.lifetime["usd"].gross == 4000
        assert history.lifetime["usd"].disputes == -4000
        yearly = reports.donor_history(session, member)
        assert yearly is not None
        assert [m.interval for m in yearly.memberships] == ["year"]
        assert reports.donor_history(session, 999_999) is None


def test_donor_search_finds_an_email_prefix_or_part_of_a_name(
    database: Database, kathmandu_ledger: ef.Scenario
) -> None:
    with database.session() as session:
        assert [d.email for d in reports.search_donors(session, "LATE@")] == ["late@example.org"]
        found = {d.email for d in reports.search_donors(session, "reader")}
        assert "late@example.org" in found  # "Ada Reader"
        assert reports.search_donors(session, "late@", by_email=False) == []
        assert reports.search_donors(session, "%") == []  # a wildcard is just a character
        assert reports.search_donors(session, "  ") == []


def test_membership_stats_count_by_status_with_mrr_and_churn_this_month(
    database: Database, stripe_http: responses.RequestsMock
) -> None:
    start = at(datetime(2026, 9, 1, tzinfo=UTC))
    with frozen_at(datetime(2026, 9, 1, tzinfo=UTC)):
        monthly = ef.membership("mon", amount=1000, renewals=0, start=start)
        yearly = ef.membership("yr", interval="year", amount=1002, renewals=0, start=start + 50)
        leaving = ef.membership("bye", amount=700, renewals=0, start=start + 100)
        apply_scenario(database, monthly + yearly + leaving, stripe_http)
    gone_at = at(datetime(2026, 10, 10, tzinfo=UTC))
    with frozen_at(datetime(2026, 10, 10, tzinfo=UTC)):
        apply_scenario(database, ef.subscription_deleted(leaving, at=gone_at), stripe_http)
    with database.session() as session:
        stats = reports.membership_stats(session, NEW_YORK, datetime(2026, 10, 20, tzinfo=UTC))
        assert stats.counts["active"] == 2
        assert stats.counts["canceled"] == 1
        assert stats.active == 2
        assert stats.mrr == {"usd": 1000 + 84}
        assert (stats.churned_this_month, stats.active_at_month_start) == (1, 3)
        assert stats.churn_basis_points == 3333
        page, more = reports.list_memberships(session, status="canceled")
        assert [m.stripe_subscription_id for m, _ in page] == ["sub_bye"]
        assert more is None
        first, after = reports.list_memberships(session, size=2)
        assert after is not None
        rest, _ = reports.list_memberships(session, size=2, after_id=after)
        ids = [m.id for m, _ in first + rest]
        assert ids == sorted(set(ids)) and len(ids) == 3


def test_pipeline_health_counts_waiting_failed_and_dead_and_the_last_arrival(
    db: Session,
) -> None:
    assert reports.pipeline_health(db).last_received_at is None
    for n, status in enumerate(["pending", "pending", "failed", "dead", "processed"]):
        event = {
            "id": f"evt_{n}",
            "type": "charge.updated",
            "created": 1_790_000_000 + n,
            "livemode": False,
            "data": {"object": {"id": f"ch_{n}"}},
        }
        now = datetime(2026, 9, 1, 12, n, tzinfo=UTC)
        store_event(db, read_event("{}", event), skipped=False, now=now)
        row = db.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == f"evt_{n}")).one()
        if status == "processed":
            mark_processed(db, row, now)
        elif status != "pending":
            recorded = record_failure(
                db,
                row.id,
                seen_attempts=0,
                error="PaymentsError: unavailable",
                now=now,
                max_attempts=1 if status == "dead" else 8,
                base_delay_seconds=60,
                max_delay_seconds=3600,
            )
            assert recorded == status
    db.commit()
    health = reports.pipeline_health(db)
    assert (health.waiting, health.failed, health.dead) == (2, 1, 1)
    assert health.last_received_at == datetime(2026, 9, 1, 12, 4, tzinfo=UTC)
    page, older = reports.list_events(db, size=2)
    assert [e.stripe_event_id for e in page] == ["evt_4", "evt_3"]
    assert older is not None
    assert [e.stripe_event_id for e in reports.list_events(db, status="pending")[0]] == [
        "evt_1",
        "evt_0",
    ]


def test_the_dashboard_period_is_this_month_quarter_year_or_a_custom_range_of_days() -> None:
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 1 December, 01:45 in Kathmandu
    month = reports.choose_period(None, None, None, now, KATHMANDU)
    assert (month.kind, month.first, month.end) == ("month", date(2026, 12, 1), date(2027, 1, 1))
    quarter = reports.choose_period("quarter", "", "", now, KATHMANDU)
    assert (quarter.first, quarter.end, quarter.label) == (
        date(2026, 10, 1),
        date(2027, 1, 1),
        "Q4 2026",
    )
    year = reports.choose_period("year", None, None, now, KATHMANDU)
    assert (year.first, year.end) == (date(2026, 1, 1), date(2027, 1, 1))
    assert year.bounds(KATHMANDU)[0] == datetime(2025, 12, 31, 18, 15, tzinfo=UTC)
    custom = reports.choose_period("custom", "2026-09-01", "2026-10-01", now, KATHMANDU)
    assert (custom.first, custom.end) == (date(2026, 9, 1), date(2026, 10, 1))
    open_ended = reports.choose_period("custom", "2026-11-01", "", now, KATHMANDU)
    assert open_ended.end == date(2026, 12, 2)  # through today there


@pytest.mark.parametrize(
    ("kind", "since", "until", "message"),
    [
        ("week", "", "", "'week' is not a period"),
        ("custom", "", "", "needs a start date"),
        ("custom", "2026-09-31", "", "'2026-09-31' is not a date"),
        ("custom", "2026-09-10", "2026-09-01", "after the start date"),
    ],
)
def test_a_bad_period_is_a_report_error_naming_it(
    kind: str, since: str, until: str, message: str
) -> None:
    with pytest.raises(reports.ReportError, match=message):
        reports.choose_period(kind, since, until, datetime(2026, 11, 30, tzinfo=UTC), KATHMANDU)
