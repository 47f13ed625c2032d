"""End to end in a real browser: a reader gives in the sandbox, the worker
applies the webhook events, and a finance staff member with two-factor logs
in, finds the gift on the dashboard and in the journal, and exports it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyotp
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Page, expect, sync_playwright

from app.cli import main
from app.clock import utcnow
from app.db import Database
from app.staff import confirm_totp_enrolment, create_staff, start_totp_enrolment
from tests.browser.conftest import CHROMIUM_ARGS

STAFF_EMAIL = "finance.browser@example.org"
STAFF_PASSWORD = "correct horse battery staple 42"
READER_EMAIL = "browser.reader@example.org"


def _finance_staff_with_two_factor(app: Flask) -> str:
    """A finance account enrolled in TOTP; returns its secret."""
    database: Database = app.extensions["donations.db"]
    with database.session() as session:
        staff = create_staff(
            session,
            email=STAFF_EMAIL,
            role="finance",
            password=STAFF_PASSWORD,
            hasher=app.extensions["donations.password_hasher"],
        )
        cipher = app.extensions["donations.secret_cipher"]
        secret = start_totp_enrolment(staff, cipher)
        totp = pyotp.TOTP(secret)
        # Enrol with the previous step's code, so the login's current code is new.
        previous = totp.generate_otp(totp.timecode(utcnow()) - 1)
        assert confirm_totp_enrolment(session, staff, previous, cipher)
        session.commit()
    return secret


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_a_sandbox_gift_reaches_the_dashboard_the_journal_and_the_export(
    served: str, app: Flask, runner: FlaskCliRunner, chromium: Path, artifacts: Path
) -> None:
    secret = _finance_staff_with_two_factor(app)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, locale="en-US")
            context.set_default_timeout(10_000)
            page = context.new_page()

            # A reader gives 42.00 USD once, in the sandbox.
            page.goto(f"{served}/donate?frequency=once&currency=usd")
            page.fill("#amount", "42")
            page.fill("input[name=email]", READER_EMAIL)
            page.fill("input[name=name]", "Bea Browser")
            _shot(page, artifacts, "01-donate")
            page.click("#give")
            page.wait_for_url("**/sandbox/checkout/**")
            expect(page.locator("body")).to_contain_text("sandbox", ignore_case=True)
            page.fill("input[name=card_number]", "4242 4242 4242 4242")
            _shot(page, artifacts, "02-sandbox-checkout")
            page.click("button[type=submit]")
            page.wait_for_url("**/donate/thanks**")
            _shot(page, artifacts, "03-thanks")

            # The worker applies the events the sandbox delivered to the webhook.
            worked = runner.invoke(main, ["worker", "--once"])
            assert worked.exit_code == 0, worked.output
            assert "0 failed, 0 dead" in worked.output

            # Finance logs in with password and a TOTP code.
            page.goto(f"{served}/ledger/")
            page.wait_for_url("**/login**")
            page.fill("input[name=email]", STAFF_EMAIL)
            page.fill("input[name=password]", STAFF_PASSWORD)
            _shot(page, artifacts, "04-login")
            page.click("button[type=submit]")
            page.wait_for_url("**/login/code**")
            page.fill("input[name=code]", pyotp.TOTP(secret).now())
            page.click("button[type=submit]")
            page.wait_for_url("**/ledger/")
            expect(page.locator("main")).to_contain_text("$42.00")
            _shot(page, artifacts, "05-dashboard")

            page.goto(f"{served}/ledger/journal")
            journal = page.locator("main")
            expect(journal).to_contain_text("$42.00")
            expect(journal).to_contain_text("Bea Browser")
            _shot(page, artifacts, "06-journal")

            page.goto(f"{served}/ledger/")
            with page.expect_download() as waiting:
                page.click("a[href*='export.csv']")
            download = waiting.value
            saved = artifacts / "ledger.csv"
            download.save_as(saved)
        finally:
            browser.close()

    text = saved.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    gifts = [row for row in rows if row["donor_email"] == READER_EMAIL]
    assert len(gifts) == 1
    gift = gifts[0]
    assert (gift["kind"], gift["currency"], gift["amount"], gift["frequency"]) == (
        "donation",
        "usd",
        "42.00",
        "once",
    )
    assert gift["fee"] and gift["net"]  # settled with the sandbox's balance transaction
    assert gift["stripe_id"].startswith("ch_")
    verified = runner.invoke(main, ["ledger", "verify"])
    assert verified.exit_code == 0, verified.output
