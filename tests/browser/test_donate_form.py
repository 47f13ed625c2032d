"""The donation form's JavaScript in Chromium: the button label and the fee
note name exactly the amount, currency and frequency the server would charge
(app.money.parse_amount in the page's language, the limits, the covered fee),
or no amount at all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect, sync_playwright

from app.donate.checkout import CheckoutSettings
from app.money import MoneyError, format_short, parse_amount
from app.receipts.messages import gettext as translated
from tests.browser.conftest import CHROMIUM_ARGS

NEUTRAL = {"once": "Give once", "month": "Give every month", "year": "Give every year"}
LABELS = {
    "once": "Give %(amount)s",
    "month": "Give %(amount)s every month",
    "year": "Give %(amount)s every year",
}
# Texts a reader might type: the server's verdict decides what the label must say.
TYPED = [
    "1,000",
    "1,00",
    "1,000.50",
    "1.000,5",
    "10.000",
    "25",
    "25.5",
    "25.555",
    "0",
    "-5",
    "1e3",
    "01,000",
    "1,0000",
    "1 000",
    "1 000,50",
    "1\u00a0000,50",
    "1000,5",
    "1.5",
    "$1,000",
    "10,000.01",
    "0.99",
    "\u0661\u0660",
    " 42 ",
    "1,000,000",
]


def _spaces(text: str) -> str:
    return re.sub(r"[\s\u00a0\u202f]+", " ", text).strip()


@pytest.fixture
def page(served: str, chromium: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="en-US")
            context.set_default_timeout(10_000)
            yield context.new_page()
        finally:
            browser.close()


def _expected(
    app: Flask, text: str, currency: str, frequency: str, locale: str, cover: bool
) -> str:
    """What the server would charge for this text, as the button should say it."""
    limits = app.config["CURRENCY_LIMITS"][currency]
    try:
        minor = parse_amount(text, currency, locale)
    except MoneyError:
        return translated(locale, NEUTRAL[frequency])
    if not limits["min"] <= minor <= limits["max"]:
        return translated(locale, NEUTRAL[frequency])
    if cover:
        minor += CheckoutSettings.from_config(app.config).fee_cover(currency).extra_for(minor)
    amount = format_short(minor, currency, locale)
    return translated(locale, LABELS[frequency], amount=amount)


def test_the_button_names_the_amount_typed_with_thousands_or_nothing(
    page: Page, served: str
) -> None:
    page.goto(f"{served}/donate?currency=usd&frequency=once")
    button = page.locator("#give")

    page.fill("#amount", "1,000")
    expect(button).to_have_text("Give $1,000")
    page.fill("#amount", "1,00")
    expect(button).to_have_text("Give once")
    expect(page.locator("#fee-total")).to_have_text("")

    page.check("input[name=frequency][value=month]")
    expect(button).to_have_text("Give every month")
    page.fill("#amount", "1,000.50")
    expect(button).to_have_text("Give $1,000.50 every month")

    page.select_option("#currency", "eur")
    expect(button).to_have_text("Give €1,000.50 every month")
    expect(page.locator("#fee-note")).to_have_text(
        "Adds 1.5% + €0.25 so that we receive your whole gift."
    )
    page.check("#cover_fees")
    # 1,000.50 + the covered fee: ceil((100050 + 25) / 0.985) = 101599
    expect(button).to_have_text("Give €1,015.99 every month")
    expect(page.locator("#fee-total")).to_have_text("You will give €1,015.99 in all.")

    page.select_option("#currency", "jpy")
    expect(button).to_have_text("Give every month")  # yen are whole: 1,000.50 is no amount
    expect(page.locator("#fee-note")).to_have_text("Adds 3.6% so that we receive your whole gift.")
    page.fill("#amount", "3,000")
    expect(button).to_have_text("Give ¥3,113 every month")  # ceil(3000 / 0.964) = 3113

    page.check("input[name=frequency][value=year]")
    page.uncheck("#cover_fees")
    expect(button).to_have_text("Give ¥3,000 every year")
    page.fill("#amount", "")
    page.check("input[name=preset][value='5000']")
    expect(button).to_have_text("Give ¥5,000 every year")


@pytest.mark.parametrize("currency", ["usd", "jpy"])
def test_the_label_agrees_with_the_server_for_every_text_in_english(
    page: Page, served: str, app: Flask, currency: str
) -> None:
    page.goto(f"{served}/donate?currency={currency}&frequency=once")
    for text in TYPED:
        page.fill("#amount", text)
        expected = _expected(app, text, currency, "once", "en", cover=False)
        assert _spaces(page.locator("#give").inner_text()) == _spaces(expected), text


@pytest.mark.settings(LANGUAGES=["en", "ru"])
def test_the_label_agrees_with_the_server_for_every_text_in_russian(
    served: str, app: Flask, chromium: Path
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                locale="ru-RU", extra_http_headers={"Accept-Language": "ru"}
            )
            page = context.new_page()
            page.goto(f"{served}/donate?currency=eur&frequency=month")
            assert page.locator("#donate-form").get_attribute("data-decimal") == ","
            page.fill("#amount", "1 000,50")
            expect(page.locator("#give")).to_contain_text("000,50")
            for text in TYPED:
                page.fill("#amount", text)
                expected = _expected(app, text, "eur", "month", "ru", cover=False)
                assert _spaces(page.locator("#give").inner_text()) == _spaces(expected), text
        finally:
            browser.close()
