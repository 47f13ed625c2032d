"""The journal's daily totals (app.ledger.totals): derived from the journal,
kept in the posting transaction, always equal to the sums of the CSV's rows;
the dashboard and the journal's totals read whole UTC days from them and the
days a local midnight cuts from the rows."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from alembic import command
from flask import Flask
from flask.testing import FlaskCliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import ledger
from app.cli import main
from app.db import Database
from app.finance import reports
from app.ledger import BalanceTxn
from app.ledger import totals as ledger_totals
from app.ledger.rollup import roll_up
from app.ledger.totals import LedgerDailyTotal
from app.migrate import alembic_config, upgrade
from app.seed import seed_database
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION
from webhooks.handlers import apply_event

KATHMANDU = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: months start at 18:15 UTC
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(app: Flask) -> Database:
    found: Database = app.extensions["donations.db"]
    return found


@pytest.fixture
def stripe() -> StripeApi:
    return StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)


def apply_all(database: Database, events: list[dict[str, Any]], stripe: StripeApi) -> None:
    for event in events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()


def assert_totals_equal_the_journal(database: Database) -> list[ledger_totals.DayTotal]:
    with database.session() as session:
        stored = ledger_totals.stored(session)
        assert stored == ledger_totals.from_journal(session)
        assert ledger_totals.differences(session) == []
        assert ledger.verify(session) == []
    return stored


def at(moment: datetime) -> int:
    return int(moment.timestamp())


# -- kept with every posting ------------------------------------------------------------


def test_the_daily_totals_equal_the_journal_after_every_kind_of_movement_applied_twice(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("tot_once", amount=5000)
    converted = ef.one_time_donation(
        "tot_fx",
        amount=3000,
        currency="eur",
        settlement_currency="usd",
        exchange_rate=1.1,
        settled_amount=3300,
        start=ef.T0 + 3 * ef.DAY,
    )
    member = ef.membership("tot_member", amount=1000, renewals=1, start=ef.T0 + ef.DAY)
    refunds = ef.partial_refunds(once.facts["charge_object"], [700, 300], start=ef.T0 + ef.DAY)
    failed_refund = ef.refund_that_fails(
        converted.facts["charge"], 500, start=ef.T0 + 4 * ef.DAY, tag="tot_rf"
    )
    lost = ef.dispute_lost(member.facts["charges"][0], 1000, start=ef.T0 + 5 * ef.DAY, tag="tot_l")
    won = ef.dispute_won(converted.facts["charge"], 3000, start=ef.T0 + 6 * ef.DAY, tag="tot_w")
    paid = ef.payout_paid("tot_p", 4000, start=ef.T0 + 7 * ef.DAY, stripe_fee=200)
    failed = ef.payout_failed("tot_pf", 1000, start=ef.T0 + 8 * ef.DAY)
    scenario = once + converted + member + refunds + failed_refund + lost + won + paid + failed
    scenario.stub(stripe_http)

    apply_all(database, scenario.events, stripe)
    first = assert_totals_equal_the_journal(database)
    apply_all(database, scenario.events, stripe)  # every event again: duplicates add nothing

    assert assert_totals_equal_the_journal(database) == first
    kinds = {t.kind for t in first}
    assert {"donation", "membership_payment", "refund", "dispute", "payout"} <= kinds
    # the converted gift counts in the currency it settled in, on the day it was made
    with database.session() as session:
        rows = [r for r in ledger.iter_rows(session) if r.stripe_id == converted.facts["charge"]]
    assert [(r.currency, r.amount_minor) for r in rows] == [("usd", 3300)]


def test_any_order_of_a_payment_its_settlement_refunds_and_dispute_keeps_the_totals_right(
    database: Database, stripe: StripeApi, stripe_http: responses.RequestsMock
) -> None:
    tags = itertools.count(1)

    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data(), duplicated=st.integers(0, 4))
    def check(data: st.DataObject, duplicated: int) -> None:
        tag = f"perm{next(tags)}"
        gift = ef.one_time_donation(
            tag,
            amount=4000,
            currency="eur",
            settlement_currency="usd",
            exchange_rate=1.1,
            settled_amount=4400,
        )
        refunds = ef.partial_refunds(gift.facts["charge_object"], [1000], start=ef.T0 + ef.DAY)
        lost = ef.dispute_lost(gift.facts["charge"], 3000, start=ef.T0 + 2 * ef.DAY, tag=tag)
        scenario = gift + refunds + lost
        scenario.stub(stripe_http)
        order = data.draw(st.permutations(scenario.events))
        apply_all(database, order + order[:duplicated], stripe)
        assert_totals_equal_the_journal(database)

    check()


def test_the_seed_bulk_and_exact_paths_keep_the_daily_totals_equal_to_the_journal(
    database: Database,
) -> None:
    with database.session() as session:
        seed_database(session, payments=300, seed=5, months=3, now=NOW)
        bulk = ledger_totals.stored(session)
        seed_database(session, payments=60, seed=6, months=2, now=NOW, exact=True)

    assert bulk
    assert assert_totals_equal_the_journal(database) != bulk


def test_verify_reports_a_wrong_total_and_rebuild_totals_recomputes_them_from_the_journal(
    runner: FlaskCliRunner, database: Database
) -> None:
    with database.session() as session:
        seed_database(session, payments=40, seed=2, months=2, now=NOW)
        day = session.scalars(select(LedgerDailyTotal.day_utc).order_by("day_utc")).first()
        assert day is not None
        session.execute(
            update(LedgerDailyTotal)
            .where(LedgerDailyTotal.day_utc == day)
            .values(amount_minor=LedgerDailyTotal.amount_minor + 1)
        )
        session.execute(
            LedgerDailyTotal.__table__.insert().values(
                day_utc=date(2020, 1, 1),
                currency="usd",
                kind="donation",
                amount_minor=5,
                fee_minor=0,
                net_minor=0,
                row_count=1,
            )
        )
        session.commit()

    result = runner.invoke(main, ["ledger", "verify"])
    assert result.exit_code == 1
    assert f"daily totals for {day.isoformat()}" in result.output
    assert "daily totals for 2020-01-01 usd donation are (amount, fee, net, rows) (5, 0, 0, 1)" in (
        result.output
    )

    rebuilt = runner.invoke(main, ["ledger", "rebuild-totals"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "daily totals rebuilt from the journal" in rebuilt.output
    assert runner.invoke(main, ["ledger", "verify"]).exit_code == 0
    assert_totals_equal_the_journal(database)


# -- read by the reports ------------------------------------------------------------------


def _post_gift(
    session: Session,
    name: str,
    moment: datetime,
    amount: int,
    *,
    currency: str = "usd",
    settle_in: str | None = None,
    settled_amount: int | None = None,
    refund: int = 0,
) -> None:
    """A gift, its settlement a day later (the row keeps the gift's time),
    and optionally a refund of part of it, settled too."""
    charge = f"ch_{name}"
    ledger.recognise_payment(
        session,
        charge_id=charge,
        kind="donation",
        currency=currency,
        amount_minor=amount,
        occurred_at=moment,
        donor_id=None,
    )
    settled = settled_amount if settled_amount is not None else amount
    fee = settled // 20
    ledger.settle(
        session,
        BalanceTxn(
            f"txn_{name}",
            "charge",
            settle_in or currency,
            settled,
            fee,
            settled - fee,
            moment + timedelta(days=1),
        ),
        object_id=charge,
        object_currency=currency,
        object_amount_minor=amount,
        charge_id=charge,
        donor_id=None,
    )
    if refund:
        ledger.recognise_refund(
            session,
            refund_id=f"re_{name}",
            charge_id=charge,
            currency=currency,
            amount_minor=refund,
            occurred_at=moment + timedelta(hours=3),
            donor_id=None,
        )


@pytest.fixture
def kathmandu_edges(database: Database) -> Database:
    """Gifts either side of each month's start in Kathmandu (18:15 UTC on the
    last day of the month before), and on whole days in between, in three
    currencies, one converted to dollars, with a refund across the edge."""
    with database.session() as session:
        n = 0
        for month_end in (date(2026, 7, 31), date(2026, 8, 31), date(2026, 9, 30)):
            edge = datetime.combine(month_end, datetime.min.time(), UTC) + timedelta(
                hours=18, minutes=15
            )
            for offset, amount in ((-1, 1000), (0, 2000), (1, 4000), (-600, 8000), (400, 300)):
                n += 1
                _post_gift(session, f"k{n}", edge + timedelta(minutes=offset), amount)
            n += 1
            _post_gift(session, f"k{n}", edge - timedelta(days=9), 5000, currency="eur")
            n += 1
            _post_gift(
                session,
                f"k{n}",
                edge + timedelta(days=3, hours=2),
                10000,
                currency="jpy",
                settle_in="usd",
                settled_amount=66,
            )
            n += 1
            _post_gift(session, f"k{n}", edge - timedelta(hours=2), 2500, refund=500)
        ledger.post_movement(
            session,
            BalanceTxn(
                "txn_kpo", "payout", "usd", -9000, 0, -9000, datetime(2026, 9, 12, tzinfo=UTC)
            ),
            "payout",
            object_id="po_k",
        )
        session.commit()
    return database


def _figures_of_rows(rows: list[ledger.Row]) -> dict[str, reports.Figures]:
    found: dict[str, reports.Figures] = {}
    for row in rows:
        found.setdefault(row.currency, reports.Figures()).add(
            row.kind, row.amount_minor, row.fee_minor or 0, 1
        )
    return dict(sorted(found.items()))


def test_month_edges_in_a_45_minute_offset_zone_come_out_as_the_summary_says(
    kathmandu_edges: Database,
) -> None:
    assert_totals_equal_the_journal(kathmandu_edges)
    with kathmandu_edges.session() as session:
        months = reports.monthly_figures(session, KATHMANDU, datetime(2026, 10, 10, tzinfo=UTC))
        for month in months:
            since = reports.day_start(month.first, KATHMANDU)
            until = reports.day_start(reports.add_months(month.first, 1), KATHMANDU)
            expected = ef.settled_figures(ledger.summary(session, since, until))
            assert {c: f.as_plain(c) for c, f in month.figures.items()} == expected, month.first
    september = months[-2]
    # 18:14 on 31 August is August in Kathmandu; 18:15 and 18:16 are September
    assert september.first == date(2026, 9, 1)
    assert september.figures["usd"].payments >= 5


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (datetime(2026, 8, 31, 18, 15, tzinfo=UTC), datetime(2026, 9, 30, 18, 15, tzinfo=UTC)),
        (datetime(2026, 8, 31, 18, 16, tzinfo=UTC), datetime(2026, 9, 1, 0, 0, tzinfo=UTC)),
        (datetime(2026, 8, 31, 18, 14, tzinfo=UTC), None),
        (None, datetime(2026, 8, 31, 18, 15, tzinfo=UTC)),
        (datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)),
        (None, None),
    ],
)
def test_journal_totals_for_dates_kind_and_currency_equal_the_sums_of_the_rows(
    kathmandu_edges: Database, since: datetime | None, until: datetime | None
) -> None:
    with kathmandu_edges.session() as session:
        rows = list(ledger.iter_rows(session, since, until))
        for kind, currency in itertools.product((None, "donation", "refund"), (None, "usd", "eur")):
            filters = reports.JournalFilter(since=since, until=until, kind=kind, currency=currency)
            expected = _figures_of_rows(
                [
                    r
                    for r in rows
                    if (kind is None or r.kind == kind)
                    and (currency is None or r.currency == currency)
                ]
            )
            assert reports.journal_totals(session, filters) == expected, (kind, currency)
        assert reports.figures_between(session, since, until) == _figures_of_rows(rows)


def test_whole_days_are_read_from_the_daily_totals_and_cut_days_from_the_rows(
    kathmandu_edges: Database,
) -> None:
    # A whole day inside the range and a day cut by its start, both with gifts.
    since = datetime(2026, 8, 31, 18, 15, tzinfo=UTC)
    until = datetime(2026, 9, 30, 18, 15, tzinfo=UTC)
    filters = reports.JournalFilter(since=since, until=until, currency="usd", kind="donation")
    with kathmandu_edges.session() as session:
        roll_up(session)  # the postings' changes into the per-day sums tampered with below
        before = reports.journal_totals(session, filters)["usd"].gross
        for day in (date(2026, 9, 3), date(2026, 8, 31)):  # whole; cut at 18:15
            session.execute(
                update(LedgerDailyTotal)
                .where(
                    LedgerDailyTotal.day_utc == day,
                    LedgerDailyTotal.currency == "usd",
                    LedgerDailyTotal.kind == "donation",
                )
                .values(amount_minor=LedgerDailyTotal.amount_minor + 1_000_000)
            )
        after = reports.journal_totals(session, filters)["usd"].gross
        session.rollback()

    assert after - before == 1_000_000  # only the whole day's total was read


def test_the_migration_fills_the_daily_totals_from_a_journal_that_is_already_there(
    db_url: str,
) -> None:
    database = Database(db_url)
    try:
        with database.session() as session:
            _post_gift(session, "mig1", datetime(2026, 9, 1, 23, 59, tzinfo=UTC), 1200)
            _post_gift(
                session,
                "mig2",
                datetime(2026, 9, 2, 0, 1, tzinfo=UTC),
                9000,
                currency="jpy",
                settle_in="usd",
                settled_amount=60,
                refund=1000,
            )
            session.commit()
            before = ledger_totals.stored(session)
        database.dispose()
        command.downgrade(alembic_config(db_url), "0006")  # the table goes, the journal stays
        upgrade(db_url)  # and comes back, filled from the journal
        with database.session() as session:
            assert ledger_totals.stored(session) == before
            assert ledger_totals.differences(session) == []
        assert {(t.day_utc, t.currency, t.kind) for t in before} >= {
            (date(2026, 9, 1), "usd", "donation"),
            (date(2026, 9, 2), "usd", "donation"),
            (date(2026, 9, 2), "jpy", "refund"),
        }
    finally:
        database.dispose()
        upgrade(db_url)
