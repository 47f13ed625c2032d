"""Appeals in Chromium: a newsroom's article page on another loopback origin
embeds the appeal with the one-line script; an amount opens the pre-filled
form at the top level; a sandbox gift made from it reaches the ledger CSV
with the appeal's campaign, article and variant; an origin not configured
cannot frame it; a Russian article gets the Russian text; the nudge switches
a one-time gift to monthly, with and without JavaScript."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Browser, Frame, Page, expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.appeals.models import AppealCounter
from app.cli import main
from tests.browser.conftest import CHROMIUM_ARGS
from tests.integration.test_finance import login
from tests.servers import live_app

READER_EMAIL = "appeal.reader@example.org"


class ArticleSite:
    """A newsroom's site: article pages that paste the one line, and a page
    that frames the embed with a plain iframe. `donate` is set once the
    donation site is served."""

    donate = ""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "/")
        lang = "ru" if path.startswith("/ru/") else "en"
        if path == "/framed":
            body = f'<iframe src="{self.donate}/embed/appeals/support?article=framed" title="appeal"></iframe>'
        else:
            body = f'<p>The story.</p><script src="{self.donate}/embed/appeals.js" data-appeal="support" async></script>'
        page = f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Article</title></head><body>{body}</body></html>'
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page.encode()]


@pytest.fixture
def newsroom() -> Iterator[tuple[str, ArticleSite]]:
    site = ArticleSite()
    with live_app(site) as base:  # type: ignore[arg-type]
        yield base, site


@pytest.fixture
def foreign() -> Iterator[tuple[str, ArticleSite]]:
    site = ArticleSite()
    with live_app(site) as base:  # type: ignore[arg-type]
        yield base, site


@pytest.fixture
def app_config(app_config: dict[str, Any], newsroom: tuple[str, ArticleSite]) -> dict[str, Any]:
    return {**app_config, "EMBED_ALLOWED_ORIGINS": [newsroom[0]]}


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def appeal_frame(page: Page) -> Frame:
    """The appeal's iframe once it has navigated to the embed. The wait is
    Playwright's, not time.sleep: the sync API learns of frames and their
    navigations only while it runs its own loop, so a sleeping poll could see
    the iframe's first URL (about:blank) for ever on a slow machine."""
    page.wait_for_selector("iframe")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "/embed/appeals/" in frame.url:
                frame.wait_for_selector("#appeal", state="attached")
                return frame
        page.wait_for_timeout(50)
    raise AssertionError("no appeal frame")


def shows_the_appeal(frame: Frame) -> bool:
    try:
        return bool(frame.evaluate("document.getElementById('appeal') !== null"))
    except Exception:  # an error page in the frame's place
        return False


def seen_counts(app: Flask) -> dict[str, int]:
    with app.extensions["donations.db"].session() as session:
        rows = session.scalars(select(AppealCounter).where(AppealCounter.event == "seen"))
        return {row.variant: row.count for row in rows}


def test_an_article_embeds_the_appeal_and_a_gift_from_it_reaches_the_ledger_with_its_article(
    served: str,
    app: Flask,
    runner: FlaskCliRunner,
    db: Session,
    browser: Browser,
    newsroom: tuple[str, ArticleSite],
    artifacts: Path,
) -> None:
    base, site = newsroom
    site.donate = served
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{base}/2026/12/the-story?utm_source=social#top")
    frame = appeal_frame(page)
    variant = frame.locator(".variant:not([hidden])")
    expect(variant).to_have_count(1)
    key = variant.get_attribute("data-variant")
    assert key in ("a", "b")
    # The frame is sized to the appeal (postMessage), not left at its default.
    page.wait_for_function("document.querySelector('iframe').style.height !== ''")
    page.screenshot(path=str(artifacts / "01-article.png"), full_page=True)
    # The impression was counted for the variant shown (sendBeacon, no cookie).
    deadline = time.monotonic() + 5
    while seen_counts(app).get(key or "", 0) < 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert seen_counts(app) == {key: 1}

    variant.locator("label", has_text="Once").click()
    variant.locator(".set-once a").first.click()  # $15, at the top level
    page.wait_for_url(f"{served}/donate?**")
    assert page.url.startswith(served)
    expect(page.locator("input[name=frequency][value=once]")).to_be_checked()
    # The appeal's own amounts need not be the form's presets: typed in for the reader.
    assert page.locator("#amount").input_value() == "15.00"
    assert page.locator("#campaign").input_value() == "support"
    article = f"{base.removeprefix('http://')}/2026/12/the-story"
    assert page.locator("#utm_content").input_value() == article
    assert page.locator("#utm_term").input_value() == key
    expect(page.locator("#nudge-line")).to_have_text("$15 once, or $5 every month?")

    page.fill("input[name=email]", READER_EMAIL)
    page.fill("input[name=name]", "Ari Article")
    page.click("#give")
    page.wait_for_url("**/sandbox/checkout/**")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")
    page.wait_for_url("**/donate/thanks**")
    expect(page.locator(".member-invite")).to_contain_text("Become a member with $5 a month")
    page.screenshot(path=str(artifacts / "02-thanks.png"), full_page=True)
    context.close()

    worked = runner.invoke(main, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    exported = runner.invoke(main, ["ledger", "export"])
    assert exported.exit_code == 0, exported.output
    rows = [
        r for r in csv.DictReader(io.StringIO(exported.output)) if r["donor_email"] == READER_EMAIL
    ]
    assert len(rows) == 1
    gift = rows[0]
    assert (gift["kind"], gift["amount"], gift["frequency"]) == ("donation", "15.00", "once")
    assert (gift["campaign"], gift["utm_medium"], gift["utm_content"], gift["utm_term"]) == (
        "support",
        "appeal",
        article,
        key,
    )

    # The campaigns page tells which variant and article brought it.
    html = login(app, db, "finance").get("/ledger/campaigns").get_data(as_text=True)
    row = re.search(rf'<tr data-appeal="support" data-variant="{key}">(.*?)</tr>', html, re.S)
    assert row
    cells = dict(re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1)))
    assert (cells["seen"], cells["clicks"], cells["created"], cells["completed"]) == (
        "1",
        "1",
        "1",
        "1",
    )
    assert (cells["gifts"], cells["revenue"]) == ("1", "$15.00")
    articles = re.search(r'id="appeal-articles">(.*?)</table>', html, re.S)
    assert articles and article in articles.group(1)


def test_a_russian_article_gets_the_russian_appeal(
    served: str, browser: Browser, newsroom: tuple[str, ArticleSite]
) -> None:
    base, site = newsroom
    site.donate = served
    page = browser.new_page()
    page.goto(f"{base}/ru/2026/12/statya")
    frame = appeal_frame(page)
    expect(frame.locator(".variant:not([hidden]) h2")).to_contain_text("журналистик")
    assert frame.evaluate("document.documentElement.lang") == "ru"
    page.close()


def test_an_origin_not_configured_cannot_frame_the_appeal(
    served: str,
    browser: Browser,
    newsroom: tuple[str, ArticleSite],
    foreign: tuple[str, ArticleSite],
) -> None:
    for _base, site in (newsroom, foreign):
        site.donate = served
    page = browser.new_page()
    page.goto(f"{newsroom[0]}/framed")
    page.wait_for_load_state("load")
    assert shows_the_appeal(appeal_frame(page))  # the configured origin may
    page.goto(f"{foreign[0]}/framed")
    page.wait_for_load_state("load")
    page.wait_for_timeout(500)
    children = [f for f in page.frames if f != page.main_frame]
    assert children and not any(shows_the_appeal(f) for f in children)
    page.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_the_nudge_switches_a_one_time_gift_to_its_monthly_equivalent(
    served: str, browser: Browser, javascript: bool, artifacts: Path
) -> None:
    context = browser.new_context(java_script_enabled=javascript, locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    if javascript:
        page.goto(f"{served}/donate?currency=usd&frequency=once")
        page.check("input[name=preset][value='25.00']")
        expect(page.locator("#nudge-line")).to_have_text("$25 once, or $8 every month?")
        page.fill("#amount", "60")
        expect(page.locator("#nudge-line")).to_have_text("$60 once, or $20 every month?")
        page.check("input[name=frequency][value=month]")
        expect(page.locator("#nudge")).to_be_hidden()
        page.check("input[name=frequency][value=once]")
        expect(page.locator("#nudge-switch")).to_have_text("Give $20 monthly instead")
        expected = "20.00"
    else:
        page.goto(f"{served}/donate?currency=usd&frequency=once&amount=30")
        expect(page.locator("#nudge-line")).to_have_text("$30 once, or $10 every month?")
        expected = "10.00"
    page.fill("input[name=email]", "switch@example.org")
    page.screenshot(path=str(artifacts / "01-offer.png"), full_page=True)
    page.click("#nudge-switch")
    page.wait_for_url(f"{served}/donate/monthly")
    expect(page.locator("input[name=frequency][value=month]")).to_be_checked()
    expect(page.locator(f"input[name=preset][value='{expected}']")).to_be_checked()
    assert page.locator("input[name=email]").input_value() == "switch@example.org"
    assert page.locator("input[name=nudge]").input_value() == "switch"
    if javascript:
        expect(page.locator("#give")).to_have_text("Give $20 every month")
    page.screenshot(path=str(artifacts / "02-monthly.png"), full_page=True)
    context.close()
