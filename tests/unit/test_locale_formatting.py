"""Amounts and dates as each language writes them (Babel), the language
prefix middleware, and the colour contrast checks of the newsroom's page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.brand.page import Page, contrast, stylesheet
from app.i18n.prefix import ENVIRON_KEY, LanguagePrefix, unprefixed_root
from app.money import MoneyError, format_input, format_money, format_short, parse_amount
from app.receipts.messages import local_date
from app.settings import load_settings


@pytest.mark.parametrize(
    ("minor", "currency", "locale", "expected"),
    [
        (100050, "rub", "ru", "1\u00a0000,50\u00a0₽"),
        (100050, "eur", "ru", "1\u00a0000,50\u00a0€"),
        (100050, "usd", "ru", "1\u00a0000,50\u00a0$"),
        (100050, "usd", "en", "$1,000.50"),
        (100050, "eur", "en", "€1,000.50"),
        (5000, "jpy", "ru", "5\u00a0000\u00a0¥"),
        (5000, "jpy", "en", "¥5,000"),
    ],
)
def test_amounts_are_written_as_the_language_writes_them(
    minor: int, currency: str, locale: str, expected: str
) -> None:
    assert format_money(minor, currency, locale) == expected


def test_short_amounts_drop_zero_decimals_and_input_is_typable_in_the_language() -> None:
    assert format_short(100000, "rub", "ru") == "1\u00a0000\u00a0₽"
    assert format_short(100050, "rub", "ru") == "1\u00a0000,50\u00a0₽"
    assert format_short(2500, "usd", "en") == "$25"
    typed = format_input(100050, "eur", "ru")
    assert parse_amount(typed, "eur", "ru") == 100050


@pytest.mark.parametrize("typed", ["1 000,50", "1\u00a0000,50", "1000,50", "1 000,50 ₽"])
def test_russian_amounts_are_read_back_in_minor_units(typed: str) -> None:
    assert parse_amount(typed, "rub", "ru") == 100050


def test_a_money_error_carries_its_message_for_translation() -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount("10,5,0", "eur", "ru")  # two decimal signs
    assert caught.value.message.startswith("Enter the amount as in %(example)s or 25")
    assert caught.value.values == {"example": "1\u00a0000,50", "decimal": ","}
    assert str(caught.value).startswith("Enter the amount as in 1\u00a0000,50 or 25: “,”")


def test_dates_are_written_in_the_language_and_the_reporting_zone() -> None:
    moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert local_date(moment, ZoneInfo("UTC"), "ru") == "31 декабря 2026\u202fг."
    assert local_date(moment, ZoneInfo("Europe/Moscow"), "ru") == "1 января 2027\u202fг."
    assert local_date(moment, ZoneInfo("UTC"), "en") == "December 31, 2026"


# -- the URL prefix ----------------------------------------------------------------------


def run_prefix(path: str, script_name: str = "") -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    LanguagePrefix(app, ["en", "ru"])({"PATH_INFO": path, "SCRIPT_NAME": script_name}, None)
    return seen


@pytest.mark.parametrize(
    ("path", "script", "path_info", "language"),
    [
        ("/ru/donate", "/ru", "/donate", "ru"),
        ("/ru/donate/thanks", "/ru", "/donate/thanks", "ru"),
        ("/ru", "/ru", "/", "ru"),
        ("/ru/", "/ru", "/", "ru"),
        ("/en/donate", "/en", "/donate", "en"),
        ("/donate", "", "/donate", None),
        ("/rub/donate", "", "/rub/donate", None),
        ("/de/donate", "", "/de/donate", None),
        ("/", "", "/", None),
    ],
)
def test_the_prefix_moves_to_script_name_for_offered_languages_only(
    path: str, script: str, path_info: str, language: str | None
) -> None:
    environ = run_prefix(path)
    assert environ["SCRIPT_NAME"] == script
    assert environ["PATH_INFO"] == path_info
    assert environ.get(ENVIRON_KEY) == language


def test_the_prefix_keeps_a_proxys_own_script_name() -> None:
    environ = run_prefix("/ru/donate", script_name="/give")
    assert environ["SCRIPT_NAME"] == "/give/ru"
    assert unprefixed_root(environ["SCRIPT_NAME"], "ru") == "/give"
    assert unprefixed_root("/give", None) == "/give"


# -- the newsroom's page -----------------------------------------------------------------


def test_contrast_follows_wcag() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the AA grey


def test_the_default_page_is_neutral_and_readable() -> None:
    settings = load_settings(environ={"APP_ENV": "test"})
    page = Page.for_language(settings, "ru")
    assert page.name == "The Independent Newsroom"
    assert page.appeal == "" and page.logo == "" and page.links == ()
    css = stylesheet(settings)
    assert "--accent: #0b5cad;" in css and "--bg: #ffffff;" in css
    for name in ("COLOUR_INK", "COLOUR_ACCENT"):
        assert contrast(settings[name], settings["COLOUR_BACKGROUND"]) >= 4.5
    assert contrast(settings["COLOUR_ACCENT"], "#ffffff") >= 4.5
