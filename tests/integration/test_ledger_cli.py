"""`donations ledger export | summary --json | verify` on a ledger built from
Stripe-shaped events."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import text

from app import ledger
from app.cli import main
from app.db import Database
from app.ledger import JournalEntry, JournalPosting
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION
from webhooks.handlers import apply_event


@pytest.fixture
def filled(app: Flask, stripe_http: responses.RequestsMock) -> Database:
    """A donation (25.00, fee 1.03) on 2026-09-21, a membership payment
    (10.00, fee 0.59) and a 5.00 refund the next day, a payout on the 25th."""
    database: Database = app.extensions["donations.db"]
    stripe = StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)
    once = ef.one_time_donation("cli", name="=SUM(A1)")
    member = ef.membership("clim", renewals=0, start=ef.T0 + 100)
    refund = ef.partial_refunds(once.facts["charge_object"], [500], start=ef.T0 + ef.DAY)
    payout = ef.payout_paid("cli", 2000, start=ef.T0 + 4 * ef.DAY)
    scenario = once + member + refund + payout
    scenario.stub(stripe_http)
    for event in scenario.events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()
    return database


def _csv(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_export_writes_the_contracts_columns_oldest_first(
    runner: FlaskCliRunner, filled: Database
) -> None:
    result = runner.invoke(main, ["ledger", "export"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ",".join(ledger.CSV_COLUMNS)
    rows = _csv(result.output)
    assert [(r["kind"], r["amount"], r["fee"], r["net"]) for r in rows] == [
        ("donation", "25.00", "1.03", "23.97"),
        ("membership_payment", "10.00", "0.59", "9.41"),
        ("refund", "-5.00", "0.00", "-5.00"),
        ("payout", "-20.00", "0.00", "-20.00"),
    ]
    assert rows[0]["donor_name"] == "'=SUM(A1)"
    assert rows[0]["occurred_at"] == "2026-09-21T14:13:30Z"


def test_export_to_a_file_with_since_and_until(
    runner: FlaskCliRunner, filled: Database, tmp_path: Path
) -> None:
    target = tmp_path / "ledger.csv"

    result = runner.invoke(
        main,
        ["ledger", "export", "--since", "2026-09-22", "--until", "2026-09-25", "-o", str(target)],
    )

    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert data.startswith(b"occurred_at,kind,")  # no byte-order mark
    assert data.count(b"\r\n") == 2  # RFC 4180 line ends: the header and one row
    rows = _csv(data.decode("utf-8"))
    assert [r["kind"] for r in rows] == ["refund"]


@pytest.mark.settings(LEDGER_REPORTING_TZ="Pacific/Auckland")
def test_dates_are_days_in_the_reporting_time_zone(
    runner: FlaskCliRunner, filled: Database
) -> None:
    # 2026-09-21T14:13Z is already the 22nd in Auckland (UTC+12).
    result = runner.invoke(main, ["ledger", "export", "--until", "2026-09-22"])

    assert result.exit_code == 0, result.output
    assert _csv(result.output) == []


def test_summary_is_the_contracts_json(runner: FlaskCliRunner, filled: Database) -> None:
    result = runner.invoke(main, ["ledger", "summary", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "currencies": {
            "usd": {
                "gross": "35.00",
                "fees": "1.62",
                "refunds": "-5.00",
                "disputes": "0.00",
                "other": "0.00",
                "net": "28.38",
                "payouts": "-20.00",
                "payments": 2,
                "unsettled": "0.00",
            }
        },
        "donors": 2,
        "active_memberships": 1,
    }


def test_summary_counts_an_unsettled_row_with_fee_0_and_says_how_much_is_unsettled(
    runner: FlaskCliRunner, app: Flask, stripe_http: responses.RequestsMock
) -> None:
    database: Database = app.extensions["donations.db"]
    stripe = StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)
    settled = ef.one_time_donation("settled", amount=2500)
    waiting = ef.one_time_donation("waiting", amount=1200, start=ef.T0 + 100)
    # No charge.updated: the balance transaction is not known yet.
    waiting.events = [e for e in waiting.events if e["type"] != "charge.updated"]
    scenario = settled + waiting
    scenario.stub(stripe_http)
    for event in scenario.events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()

    result = runner.invoke(main, ["ledger", "summary", "--json"])

    assert result.exit_code == 0, result.output
    usd = json.loads(result.output)["currencies"]["usd"]
    assert list(usd) == [
        "gross",
        "fees",
        "refunds",
        "disputes",
        "other",
        "net",
        "payouts",
        "payments",
        "unsettled",
    ]
    assert usd == {
        "gross": "37.00",
        "fees": "1.03",
        "refunds": "0.00",
        "disputes": "0.00",
        "other": "0.00",
        "net": "35.97",
        "payouts": "0.00",
        "payments": 2,
        "unsettled": "12.00",
    }


def test_summary_without_json_is_a_table_for_people(
    runner: FlaskCliRunner, filled: Database
) -> None:
    result = runner.invoke(main, ["ledger", "summary"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "currency",
        "gross",
        "fees",
        "refunds",
        "disputes",
        "other",
        "net",
        "payouts",
        "payments",
        "unsettled",
    ]
    assert lines[1].split() == [
        "usd",
        "35.00",
        "1.62",
        "-5.00",
        "0.00",
        "0.00",
        "28.38",
        "-20.00",
        "2",
        "0.00",
    ]
    assert "donors: 2" in result.output and "active memberships: 1" in result.output


def test_summary_over_a_period_counts_only_its_rows(
    runner: FlaskCliRunner, filled: Database
) -> None:
    result = runner.invoke(main, ["ledger", "summary", "--json", "--since", "2026-09-22"])

    usd = json.loads(result.output)["currencies"]["usd"]
    assert (usd["gross"], usd["refunds"], usd["payments"]) == ("0.00", "-5.00", 0)


def test_verify_passes_on_a_sound_ledger(runner: FlaskCliRunner, filled: Database) -> None:
    result = runner.invoke(main, ["ledger", "verify"])

    assert result.exit_code == 0, result.output


def test_verify_fails_and_says_which_entry_does_not_balance(
    runner: FlaskCliRunner, filled: Database
) -> None:
    # Written around the ledger's own checks, as a faulty tool might.
    with filled.session() as session:
        entry_id = session.scalar(
            text("SELECT id FROM journal_entries WHERE key = 'charge:ch_cli'")
        )
        session.add(
            JournalPosting(entry_id=entry_id, account="adjustments", currency="usd", amount_minor=1)
        )
        session.commit()

    result = runner.invoke(main, ["ledger", "verify"])

    assert result.exit_code == 1
    assert "entry charge:ch_cli does not balance in usd: off by 1" in result.output
    assert JournalEntry.__tablename__ == "journal_entries"


@pytest.mark.parametrize(
    "args",
    [
        ["ledger", "export", "--since", "2026-13-01"],
        ["ledger", "export", "--until", "yesterday"],
        ["ledger", "export", "--since", "2026-09-01T00:00"],
        ["ledger", "summary", "--json", "--since", "2026-9-1"],
        ["ledger", "export", "--since", "2026-09-10", "--until", "2026-09-01"],
        ["ledger", "summary", "--bogus"],
        ["ledger", "export", "--bogus"],
    ],
)
def test_a_bad_date_or_option_is_a_one_line_error_with_status_2(
    runner: FlaskCliRunner, args: list[str]
) -> None:
    result = runner.invoke(main, args)

    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
