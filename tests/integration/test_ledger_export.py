"""The ledger CSV's fast path (PostgreSQL COPY, app.ledger.export) writes the
very bytes of the Python path (app.ledger.export_rows through csv), on a
ledger full of awkward data."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import responses
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

from app import ledger
from app.cli import main
from app.db import Database
from app.donate.models import Checkout
from app.donors import Donor
from app.finance import reports
from app.ledger import export as ledger_export
from app.stripe_api import StripeApi
from tests import event_factory as ef
from tests.stripe_helpers import API_VERSION
from webhooks.handlers import apply_event

TRICKY_NAMES = {
    "comma": "Doe, Jane",
    "quote": 'Jane "JD" Doe',
    "newline": "Jane\nDoe\r\nJr",
    "formula": '=HYPERLINK("x")',
    "minus": "-Jane",
    "unicode": "Zoë Ørsted 山田 🎉",
}


def _checkout(
    session: Session,
    tag: str,
    *,
    name: str | None,
    frequency: str = "once",
    currency: str = "usd",
    **utm: str | None,
) -> None:
    email = f"{tag}@example.org"
    donor = Donor(email=email, name=name)
    session.add(donor)
    session.flush()
    session.add(
        Checkout(
            id=f"co_{tag}",
            donor_id=donor.id,
            email=email,
            name=name,
            frequency=frequency,
            currency=currency,
            amount_minor=1000,
            total_minor=1000,
            stripe_checkout_session_id=f"cs_{tag}",
            **utm,
        )
    )


@pytest.fixture
def tricky(app: Flask, stripe_http: responses.RequestsMock) -> Database:
    """Payments in usd, jpy (zero-decimal) and kwd (three-decimal), one
    converted from eur into usd, one never settled, refunds (one bounced), a
    lost dispute, a membership, a payout; names and attribution with commas,
    quotes, line breaks, formulas, unicode and nothing at all."""
    database: Database = app.extensions["donations.db"]
    stripe = StripeApi("sk_test_x", api_version=API_VERSION, max_network_retries=0)
    with database.session() as session:
        for number, (tag, name) in enumerate(TRICKY_NAMES.items()):
            _checkout(
                session,
                tag,
                name=name,
                campaign=f"+camp,{number}",
                utm_source="@home" if number % 2 else "",
                utm_medium="-email",
                utm_content='say "hi"',
                utm_term=None,
            )
        _checkout(session, "yen", name="", currency="jpy", campaign="tokyo")
        _checkout(session, "dinar", name=None, currency="kwd")
        _checkout(session, "fx", name="Émile", currency="eur", utm_source="\tindent")
        _checkout(session, "open", name="Never Settled", campaign="=1+1")
        _checkout(session, "mem", name="Member, Monthly", frequency="month")
        session.commit()
    scenario = ef.Scenario()
    start = ef.T0
    gifts = []
    for tag in TRICKY_NAMES:
        gift = ef.one_time_donation(
            tag, amount=2500 + len(gifts), name=TRICKY_NAMES[tag], start=start
        )
        gifts.append(gift)
        scenario += gift
        start += 1000
    yen = ef.one_time_donation("yen", amount=5000, currency="jpy", start=start)
    dinar = ef.one_time_donation("dinar", amount=12340, currency="kwd", start=start + 100)
    fx = ef.one_time_donation(
        "fx",
        amount=2000,
        currency="eur",
        settlement_currency="usd",
        exchange_rate=1.08,
        settled_amount=2160,
        start=start + 200,
    )
    opened = ef.one_time_donation("open", amount=700, start=start + 300)
    # Without its charge.updated the balance transaction never arrives: fee and net empty.
    opened.events = [e for e in opened.events if e["type"] != "charge.updated"]
    member = ef.membership("mem", renewals=1, start=start + 400)
    day = start + ef.DAY
    refunds = ef.partial_refunds(gifts[0].facts["charge_object"], [500, 5], start=day)
    yen_refund = ef.partial_refunds(yen.facts["charge_object"], [1000], start=day + 50)
    bounced = ef.refund_that_fails(gifts[1].facts["charge"], 300, start=day + 100, tag="bnc")
    disputed = ef.dispute_lost(gifts[2].facts["charge"], 2502, start=day + 200, tag="dsp")
    payout = ef.payout_paid("po", 4000, start=day + 400, stripe_fee=25)
    # The converted gift: disputed and won back, and a refund that bounced,
    # each settled in dollars; the donor was charged in euros.
    fx_won = ef.dispute_won(
        fx.facts["charge"],
        2000,
        currency="eur",
        settled=("usd", 2160),
        start=day + 500,
        tag="fxdsp",
    )
    fx_bounced = ef.refund_that_fails(
        fx.facts["charge"],
        1000,
        currency="eur",
        settled=("usd", 1080),
        start=day + 600,
        tag="fxbnc",
    )
    scenario += yen + dinar + fx + opened + member + refunds + yen_refund + bounced
    scenario += disputed + payout + fx_won + fx_bounced
    scenario.stub(stripe_http)
    for event in scenario.events:
        with database.session() as session:
            apply_event(session, event, stripe)
            session.commit()
    return database


def _both(database: Database, **bounds: datetime | None) -> tuple[bytes, bytes]:
    """(the path iter_csv_chunks picks, the Python path), on the same data."""
    with database.session() as session:
        picked = b"".join(ledger_export.iter_csv_chunks(session, bom=True, **bounds))
    with database.session() as session:
        rows = ledger.export_rows(session, bounds.get("since"), bounds.get("until"))
        python = b"".join(ledger_export.python_chunks(rows, bom=True))
    return picked, python


def test_copy_and_python_paths_write_identical_bytes_for_tricky_data(
    tricky: Database, db_url: str
) -> None:
    with tricky.session() as session:
        assert ledger_export.uses_copy(session) == db_url.startswith("postgresql")

    picked, python = _both(tricky)

    assert picked == python
    rows = list(csv.DictReader(io.StringIO(picked.decode("utf-8").removeprefix("\ufeff"))))
    assert len(rows) >= 15
    by_kind = {(r["kind"], r["currency"]): r for r in rows}
    assert by_kind[("donation", "jpy")]["amount"] == "5000"
    assert by_kind[("donation", "kwd")]["amount"] == "12.340"
    assert by_kind[("payout", "usd")]["frequency"] == ""
    fx = [
        (r["kind"], r["currency"], r["amount"], r["donor_amount"])
        for r in rows
        if r["donor_currency"] == "eur"
    ]
    assert fx == [
        ("donation", "usd", "21.60", "20.00"),
        ("dispute", "usd", "-21.60", "-20.00"),
        ("refund", "usd", "-10.80", "-10.00"),
        ("refund_failure", "usd", "10.80", "10.00"),
        ("dispute_reversal", "usd", "21.60", "20.00"),
    ]
    unsettled = next(r for r in rows if r["stripe_id"] == "ch_open")
    assert (unsettled["amount"], unsettled["fee"], unsettled["net"]) == ("7.00", "", "")
    assert unsettled["campaign"] == "'=1+1"
    names = {r["donor_name"] for r in rows}
    assert {"Doe, Jane", 'Jane "JD" Doe', "Jane\nDoe\r\nJr", "'-Jane"} <= names
    assert '\'=HYPERLINK("x")' in names
    assert "Zoë Ørsted 山田 🎉" in names
    assert any(r["utm_source"] == "'\tindent" for r in rows)
    assert any(r["kind"] == "refund" and r["amount"] == "-0.05" for r in rows)
    assert {"refund_failure", "dispute", "membership_payment", "payout"} <= {
        r["kind"] for r in rows
    }
    assert picked.endswith(b",ch_mem_1\r\n")


def test_copy_and_python_paths_agree_within_bounds(tricky: Database) -> None:
    since = datetime.fromtimestamp(ef.T0 + 3000, UTC)
    until = datetime.fromtimestamp(ef.T0 + ef.DAY + 300, UTC)

    picked, python = _both(tricky, since=since, until=until)

    assert picked == python
    assert 3 < picked.count(b"\r\n") < 20


def test_the_filtered_journal_csv_equals_on_both_paths(tricky: Database) -> None:
    filters = reports.JournalFilter(kind="refund", currency="usd")
    with tricky.session() as session:
        picked = b"".join(
            ledger_export.iter_filtered_csv_chunks(
                session, filters.rows(), filters.apply, reports.journal_csv_rows(session, filters)
            )
        )
    with tricky.session() as session:
        python = b"".join(ledger_export.python_chunks(reports.journal_csv_rows(session, filters)))

    assert picked == python
    assert picked.count(b",refund,") == 5


def test_the_cli_export_writes_the_same_bytes(runner: FlaskCliRunner, tricky: Database) -> None:
    _, python = _both(tricky)

    result = runner.invoke(main, ["ledger", "export"])

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == python.removeprefix("\ufeff".encode())


def test_an_export_abandoned_halfway_leaves_the_connection_usable(tricky: Database) -> None:
    with tricky.session() as session:
        chunks = ledger_export.iter_csv_chunks(session)
        assert next(chunks).startswith(b"occurred_at,")
        chunks.close()
        session.rollback()
        assert sum(1 for _ in ledger.iter_rows(session)) > 10
