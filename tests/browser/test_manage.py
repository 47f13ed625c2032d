"""Manage my membership in a real browser, by keyboard alone: a member who
gave monthly in the sandbox asks for a link, opens it from the email the
worker wrote, and cancels at the period's end; the sandbox's event comes back
through the webhook and the page then offers to resume."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Page, expect, sync_playwright

from app.cli import main
from tests.browser.conftest import CHROMIUM_ARGS

READER_EMAIL = "browser.member@example.org"
LINK = re.compile(r"https?://[^/\s]+(/manage/[A-Za-z0-9_-]{43})")


@pytest.fixture
def app_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {**app_config, "MAIL_FOLDER": str(tmp_path / "mail")}


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def work(runner: FlaskCliRunner) -> None:
    worked = runner.invoke(main, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output


def mailed_link(app: Flask) -> str:
    (path,) = Path(app.config["MAIL_FOLDER"]).glob("manage_link-*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    found = LINK.search(str(body.get_content()))
    assert found
    return found.group(1)


def test_a_member_cancels_with_the_keyboard_alone(
    served: str, app: Flask, runner: FlaskCliRunner, chromium: Path, artifacts: Path
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="en-US")
            context.set_default_timeout(10_000)
            page = context.new_page()
            page.goto(f"{served}/donate?frequency=month&currency=usd&amount=10")
            page.fill("input[name=email]", READER_EMAIL)
            page.fill("input[name=name]", "Mo Member")
            page.click("#give")
            page.wait_for_url("**/sandbox/checkout/**")
            page.fill("input[name=card_number]", "4242 4242 4242 4242")
            page.click("button[type=submit]")
            page.wait_for_url("**/donate/thanks**")
            work(runner)

            # From the thanks page to the manage form, by keyboard.
            tab_to(page, "a[href='/manage']")
            page.keyboard.press("Enter")
            page.wait_for_url("**/manage")
            tab_to(page, "input[name=email]")
            page.keyboard.type(READER_EMAIL)
            page.keyboard.press("Enter")
            expect(page.locator("h1")).to_have_text("Check your email")
            page.screenshot(path=str(artifacts / "01-sent.png"), full_page=True)
            work(runner)

            page.goto(f"{served}{mailed_link(app)}")
            tab_to(page, "main button[type=submit]")
            page.keyboard.press("Enter")
            page.wait_for_url("**/manage/account")
            expect(page.locator("main")).to_contain_text("$10.00")
            page.screenshot(path=str(artifacts / "02-account.png"), full_page=True)

            tab_to(page, "textarea[name=reason]")
            page.keyboard.type("Trying another paper for a while")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            page.wait_for_url("**/manage/account")
            expect(page.locator("main")).to_contain_text("your change was sent")
            work(runner)
            page.reload()
            expect(page.locator("main")).to_contain_text("ends on")
            expect(page.locator("main")).to_contain_text("Resume my membership")
            page.screenshot(path=str(artifacts / "03-cancelled.png"), full_page=True)
        finally:
            browser.close()
