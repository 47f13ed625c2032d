"""Receipts, refund notes, failed-payment notices and annual statements, end to
end: signed events through the real webhook route and the real worker, mail
received by a real SMTP server (aiosmtpd) on a free loopback port, or written
as .eml files when no MAIL_SERVER is set; the statement PDF for staff."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import responses
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli import main
from app.clock import frozen_at, utcnow
from app.db import Database
from app.donate.models import Checkout
from app.donors import find_or_create_donor
from app.outbox.models import OutboxJob
from tests import event_factory as ef
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_finance import login
from tests.servers import free_port
from tests.stripe_helpers import post_event
from webhooks.worker import Jobs, RetryPolicy, drain

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=3600)
BASE = "http://donate.test"


class Mailbox:
    """An aiosmtpd server on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.received]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture
def app_config(
    app_config: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, Any]:
    config = {
        **app_config,
        "MAIL_FOLDER": str(tmp_path / "mail"),
        "MAIL_FROM": "receipts@newsroom.test",
        "ORGANISATION_ADDRESS": "1 Press Row, Springfield",
        "ORGANISATION_TAX_ID": "EIN 12-3456789",
        "ORGANISATION_TAX_STATUS": "A 501(c)(3) nonprofit: no goods or services were provided.",
        "ORGANISATION_CONTACT_EMAIL": "members@newsroom.test",
        "OUTBOX_MAX_ATTEMPTS": 3,
    }
    if "mailbox" in request.fixturenames:
        box: Mailbox = request.getfixturevalue("mailbox")
        config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(box.port))
    return config


def database(app: Flask) -> Database:
    db: Database = app.extensions["donations.db"]
    return db


def work(app: Flask) -> list[Any]:
    """What `donations worker --once` does: every due event and job."""
    payments = app.extensions["donations.payments"]
    return drain(database(app), payments, POLICY, jobs=Jobs.from_settings(app.config, payments))


def deliver(client: FlaskClient, events: list[dict[str, Any]]) -> None:
    for event in events:
        response = post_event(client, event, WEBHOOK_SECRET, timestamp=int(utcnow().timestamp()))
        assert response.status_code == 200


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain text and the HTML of a multipart/alternative message."""
    alternative = next(p for p in message.walk() if p.get_content_type() == "multipart/alternative")
    kinds = [p.get_content_type() for p in alternative.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    text = alternative.get_body(("plain",))
    html = alternative.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def jobs(db: Session) -> dict[str, OutboxJob]:
    db.expire_all()
    found = {job.key: job for job in db.scalars(select(OutboxJob))}
    db.commit()  # end the read: on SQLite an open one would hold up the worker
    return found


def add_checkout(db: Session, checkout_id: str, email_address: str, **fields: Any) -> None:
    donor = find_or_create_donor(db, email_address, "Ada Reader")
    db.add(
        Checkout(
            id=checkout_id,
            donor_id=donor.id,
            email=donor.email,
            name=donor.name,
            frequency=fields.pop("frequency", "once"),
            currency="usd",
            amount_minor=2500,
            total_minor=2500,
            stripe_checkout_session_id=f"cs_{checkout_id}",
            status="open",
            **fields,
        )
    )
    db.commit()


# -- receipts over SMTP ------------------------------------------------------------------


def test_every_payment_gets_exactly_one_receipt_however_its_events_repeat_or_reorder(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("rcpt", amount=2500)
    member = ef.membership("rcptm", amount=1000, renewals=1, start=ef.T0 + 100)
    scenario = once + member
    scenario.stub(stripe_http)
    add_checkout(
        db, "co_rcpt", once.facts["email"], dedication_kind="memory", dedication_name="Grandma <Jo>"
    )
    events = list(reversed(scenario.events))
    # The same charge in an event of its own (Stripe sends an object in
    # several events), besides the redelivery of every event.
    again = {**scenario.events[2], "id": "evt_repeat_charge"}
    with frozen_at(NOW):
        deliver(client, events + events[:5] + [again])
        work(app)
    with frozen_at(NOW + timedelta(minutes=5)):  # past the backoff of what had to wait
        deliver(client, events)
        work(app)

    receipts = {str(m["Message-ID"]): m for m in mailbox.received}
    assert len(mailbox.received) == 3  # one per charge: the gift and two membership payments
    assert len(receipts) == 3
    assert sorted(rcpts[0] for _from, rcpts in mailbox.envelopes) == sorted(
        [once.facts["email"], member.facts["email"], member.facts["email"]]
    )
    gift = receipts["<receipt.ch_rcpt@donate.test>"]
    assert gift["Subject"] == "Your receipt from The Independent Newsroom"
    assert gift["To"].addresses[0].addr_spec == once.facts["email"]
    assert gift["Reply-To"] == "members@newsroom.test"
    text, html = parts(gift)
    for body in (text, html):
        assert "$25.00" in body
        assert "One-time gift" in body
        assert "1 Press Row, Springfield" in body
        assert "EIN 12-3456789" in body
        assert "members@newsroom.test" in body
        assert f"{BASE}/manage" in body
        assert "September 21, 2026" in body
    assert "In memory of Grandma <Jo>" in text  # what the donor typed, escaped in HTML
    assert "In memory of Grandma &lt;Jo&gt;" in html and "<Jo>" not in html
    number = next(line for line in text.splitlines() if line.startswith("Receipt number"))
    assert number.startswith("Receipt number: R-000000")
    renewal = receipts[f"<receipt.{member.facts['charges'][1]}@donate.test>"]
    renewal_text, _ = parts(renewal)
    assert "$10.00" in renewal_text and "Monthly membership" in renewal_text
    assert {job.status for job in jobs(db).values()} == {"done"}


def test_the_worker_command_sends_the_receipt_in_the_checkouts_language(
    app: Flask,
    client: FlaskClient,
    runner: FlaskCliRunner,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("lang", amount=150000, currency="eur")
    once.stub(stripe_http)
    add_checkout(db, "co_lang", once.facts["email"], locale="de")
    with frozen_at(NOW):
        deliver(client, once.events)
        result = runner.invoke(main, ["worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "jobs: 1 processed, 0 failed, 0 dead" in result.output
    (receipt,) = mailbox.received
    assert receipt["Content-Language"] == "de"
    text, _ = parts(receipt)
    assert "1.500,00\xa0€" in text  # app.money.format_money for the locale
    assert "21. September 2026" in text


@pytest.mark.settings(
    LOCALISED={"ru": {"organisation_name": "Независимая редакция"}},
)
def test_a_gift_given_in_russian_gets_its_receipt_in_russian(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("ru", amount=100050, currency="eur")
    once.stub(stripe_http)
    add_checkout(db, "co_ru", once.facts["email"], locale="ru")
    with frozen_at(NOW):
        deliver(client, once.events)
        work(app)

    (receipt,) = mailbox.received
    assert receipt["Content-Language"] == "ru"
    assert str(receipt["Subject"]) == "Ваша квитанция от Независимая редакция"
    text, html = parts(receipt)
    for body in (text, html):
        assert "Спасибо за вашу поддержку. Это ваша квитанция." in body
        assert "1\xa0000,50\xa0€" in body  # Babel's Russian: grouped by a space, comma decimals
        assert re.search(r"21 сентября 2026\sг\.", body)  # CLDR: a narrow space before "г."
        assert "Разовое пожертвование" in body
        assert f"{BASE}/ru/manage" in body  # links to the pages in Russian
        assert "Receipt" not in body and "Thank you" not in body
    assert "Номер квитанции: R-" in text


def test_a_refund_sends_a_corrected_note_with_the_refund_and_the_net_gift(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("refd", amount=2500)
    refunds = ef.partial_refunds(once.facts["charge_object"], [1000, 500], start=ef.T0 + ef.DAY)
    scenario = once + refunds
    scenario.stub(stripe_http)
    with frozen_at(NOW):
        deliver(client, scenario.events + scenario.events)
        work(app)

    assert mailbox.subjects() == [
        "Your receipt from The Independent Newsroom",
        "A refund on your gift to The Independent Newsroom",
        "A refund on your gift to The Independent Newsroom",
    ]
    first, second = (parts(m)[0] for m in mailbox.received[1:])
    receipt_text = parts(mailbox.received[0])[0]
    number = next(line for line in receipt_text.splitlines() if line.startswith("Receipt number"))
    assert number in first
    assert "Refunded: $10.00" in first and "Your gift is now: $15.00" in first
    assert "Refunded: $5.00" in second
    assert "Refunded in all: $15.00" in second and "Your gift is now: $10.00" in second
    assert set(jobs(db)) == {
        "receipt:ch_refd",
        f"refund_note:{refunds.facts['refunds'][0]}",
        f"refund_note:{refunds.facts['refunds'][1]}",
    }


def test_a_refund_applied_before_its_charge_waits_for_it_and_then_sends_its_note(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    # Another worker (or lane) holds the charge's events, or they wait for a
    # retry: the refund is applied first, and its note must wait, not die.
    once = ef.one_time_donation("early", amount=2500)
    refunds = ef.partial_refunds(once.facts["charge_object"], [1000], start=ef.T0 + ef.DAY)
    (once + refunds).stub(stripe_http)
    note = f"refund_note:{refunds.facts['refunds'][0]}"
    first = [e for e in refunds.events if e["type"].startswith("refund.")]
    assert first and all(e["data"]["object"]["object"] == "refund" for e in first)
    with frozen_at(NOW):
        deliver(client, first)
        work(app)
    assert jobs(db)[note].status == "failed"
    assert mailbox.subjects() == []

    with frozen_at(NOW + timedelta(hours=1)):
        deliver(client, once.events + [e for e in refunds.events if e not in first])
        work(app)
    with frozen_at(NOW + timedelta(hours=2)):  # a note waits for its receipt to go first
        work(app)

    assert sorted(mailbox.subjects()) == [
        "A refund on your gift to The Independent Newsroom",
        "Your receipt from The Independent Newsroom",
    ]
    assert {key: job.status for key, job in jobs(db).items()} == {
        "receipt:ch_early": "done",
        note: "done",
    }


def test_a_failed_membership_payment_sends_a_notice_then_the_retry_a_receipt(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    scenario = ef.failed_renewal_then_retry("fail")
    scenario.stub(stripe_http)
    failed_at = next(
        n for n, e in enumerate(scenario.events) if e["type"] == "invoice.payment_failed"
    )
    with frozen_at(NOW):
        deliver(client, scenario.events[: failed_at + 2])
        work(app)
    # The first receipt waits (backoff) for the events that say "monthly".
    with frozen_at(NOW + timedelta(minutes=5)):
        deliver(client, scenario.events[: failed_at + 2])  # redelivered: no second notice
        work(app)
        notices = list(mailbox.received)
    with frozen_at(NOW + timedelta(minutes=10)):
        deliver(client, scenario.events[failed_at + 2 :])
        work(app)

    assert sorted(m["Subject"] for m in notices) == [
        "Your membership payment to The Independent Newsroom did not go through",
        "Your receipt from The Independent Newsroom",
    ]
    notice = next(m for m in notices if "did not go through" in m["Subject"])
    text, html = parts(notice)
    assert notice["To"].addresses[0].addr_spec == scenario.facts["email"]
    assert f"{BASE}/manage" in text and f'href="{BASE}/manage"' in html
    assert "$10.00" in text
    later = mailbox.received[2:]
    assert [str(m["Message-ID"]) for m in later] == [
        f"<receipt.{scenario.facts['renewal_charge']}@donate.test>"
    ]
    assert "payment_failed:in_fail_r" in jobs(db)


def test_an_smtp_outage_delays_receipts_without_losing_them(
    app: Flask,
    client: FlaskClient,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("outage")
    once.stub(stripe_http)
    mailbox.stop()
    with frozen_at(NOW):
        deliver(client, once.events)
        during = work(app)
    job = jobs(db)["receipt:ch_outage"]
    failed = (job.status, job.attempts, job.next_attempt_at, job.last_error)

    mailbox.start()
    with frozen_at(NOW + timedelta(seconds=30)):
        too_soon = work(app)  # the backoff has not passed
    with frozen_at(NOW + timedelta(seconds=61)):
        after = work(app)
        work(app)

    assert [getattr(o, "status", None) for o in during if hasattr(o, "key")] == ["failed"]
    assert failed[:3] == ("failed", 1, NOW + timedelta(seconds=60))
    assert failed[3] and failed[3].startswith("ConnectionRefusedError")
    assert "@" not in failed[3]
    assert too_soon == []
    assert [(o.key, o.status) for o in after] == [("receipt:ch_outage", "processed")]
    assert len(mailbox.received) == 1
    job = jobs(db)["receipt:ch_outage"]
    assert (job.status, job.attempts, job.last_error) == ("done", 2, None)


# -- without an SMTP server ---------------------------------------------------------------


def test_without_mail_server_each_message_is_an_eml_file_and_nothing_of_it_is_logged(
    app: Flask,
    client: FlaskClient,
    db: Session,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("file", name="Zed Quill")
    once.stub(stripe_http)
    caplog.set_level(logging.DEBUG)
    with frozen_at(NOW):
        deliver(client, once.events)
        work(app)
        deliver(client, once.events)
        work(app)

    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert [f.name for f in files] == ["receipt-ch_file.eml"]
    raw = files[0].read_bytes()
    assert b"\r\n" in raw  # RFC 5322 line ends
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"].addresses[0].addr_spec == once.facts["email"]
    assert message["From"] == "receipts@newsroom.test"
    text, _ = parts(message)
    assert "$25.00" in text
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (once.facts["email"], "Zed Quill", "Your receipt", "$25.00", "Thank you"):
        assert secret not in logged
    assert "receipt:ch_file" in caplog.text  # the job itself is logged, by its key


# -- annual statements --------------------------------------------------------------------


def test_the_annual_statement_run_twice_sends_one_message_per_donor(
    app: Flask,
    client: FlaskClient,
    runner: FlaskCliRunner,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("stmt", amount=2500)
    refunds = ef.partial_refunds(once.facts["charge_object"], [1000], start=ef.T0 + ef.DAY)
    member = ef.membership("stmtm", amount=1000, renewals=1, start=ef.T0 + 100)
    scenario = once + refunds + member
    scenario.stub(stripe_http)
    with frozen_at(NOW):
        deliver(client, scenario.events)
        work(app)
    receipts = len(mailbox.received)

    with frozen_at(datetime(2027, 1, 5, tzinfo=UTC)):
        first = runner.invoke(main, ["receipts", "annual", "--year", "2026"])
        second = runner.invoke(main, ["receipts", "annual", "--year", "2026"])

    assert first.exit_code == 0, first.output
    assert "2 donors, 2 newly queued, 2 sent, 0 failed" in first.output
    assert second.exit_code == 0, second.output
    assert "2 donors, 0 newly queued, 0 sent" in second.output
    statements = mailbox.received[receipts:]
    assert sorted(rcpts[0] for _f, rcpts in mailbox.envelopes[receipts:]) == sorted(
        [once.facts["email"], member.facts["email"]]
    )
    assert {m["Subject"] for m in statements} == {
        "Your 2026 giving statement from The Independent Newsroom"
    }
    by_donor = {m["To"].addresses[0].addr_spec: m for m in statements}
    gift_text, _ = parts(by_donor[once.facts["email"]])
    assert "Gifts (1): $25.00" in gift_text
    assert "Refunds: -$10.00" in gift_text and "Net giving: $15.00" in gift_text
    member_text, _ = parts(by_donor[member.facts["email"]])
    assert "Gifts (2): $20.00" in member_text
    attachment = next(by_donor[member.facts["email"]].iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF")


def test_the_annual_statement_is_in_the_language_the_donor_last_gave_in(
    app: Flask,
    client: FlaskClient,
    runner: FlaskCliRunner,
    db: Session,
    mailbox: Mailbox,
    stripe_http: responses.RequestsMock,
) -> None:
    once = ef.one_time_donation("strus", amount=250000, currency="eur")
    once.stub(stripe_http)
    add_checkout(db, "co_strus", once.facts["email"], locale="ru")
    with frozen_at(NOW):
        deliver(client, once.events)
        work(app)
    receipts = len(mailbox.received)
    with frozen_at(datetime(2027, 1, 5, tzinfo=UTC)):
        result = runner.invoke(main, ["receipts", "annual", "--year", "2026"])

    assert result.exit_code == 0, result.output
    (statement,) = mailbox.received[receipts:]
    assert statement["Content-Language"] == "ru"
    assert str(statement["Subject"]) == (
        "Ваша справка о пожертвованиях за 2026 год от The Independent Newsroom"
    )
    text, _ = parts(statement)
    assert "Итого пожертвований: 2\xa0500,00\xa0€" in text


@pytest.mark.parametrize(
    ("year", "message"),
    [("2026", "2026 has not ended yet"), ("1999", "between 2000 and"), ("soon", "not a valid")],
)
def test_the_annual_statement_refuses_a_year_that_is_not_over_or_not_a_year(
    runner: FlaskCliRunner, year: str, message: str
) -> None:
    with frozen_at(NOW):
        result = runner.invoke(main, ["receipts", "annual", "--year", year])

    assert result.exit_code == 2
    assert message in result.output


def test_the_statement_pdf_is_for_finance_staff_and_403_for_viewers(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    once = ef.one_time_donation("pdf", amount=2500, name="Ёлка Читатель")
    once.stub(stripe_http)
    with frozen_at(NOW):
        deliver(client, once.events)
        work(app)
    donor_id = find_or_create_donor(db, once.facts["email"]).id
    db.commit()
    finance = login(app, db, "finance")
    viewer = login(app, db, "viewer")
    url = f"/ledger/donors/{donor_id}/statement/2026.pdf"

    page = finance.get(f"/ledger/donors/{donor_id}").get_data(as_text=True)
    got = finance.get(url)
    refused = viewer.get(url)
    missing = finance.get(f"/ledger/donors/{donor_id + 99}/statement/2026.pdf")
    anonymous = app.test_client().get(url)

    assert f'href="{url}"' in page  # linked from the donor page
    assert got.status_code == 200
    assert got.mimetype == "application/pdf"
    assert got.data.startswith(b"%PDF")
    assert "attachment" in got.headers["Content-Disposition"]
    assert refused.status_code == 403
    assert missing.status_code == 404
    assert anonymous.status_code in (302, 303)
