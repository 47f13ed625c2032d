"""Money at the edges: parsing what people type, Stripe's decimal places,
formatting, and the fee a donor may cover. Integers all the way."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from babel.numbers import format_decimal
from hypothesis import given
from hypothesis import strategies as st

from app.money import (
    FeeCover,
    MoneyError,
    charge_step,
    decimal_places,
    format_input,
    format_money,
    format_plain,
    format_short,
    parse_amount,
)


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        ("usd", 2),
        ("eur", 2),
        ("jpy", 0),
        ("krw", 0),
        ("ugx", 0),
        ("kwd", 3),
        ("bhd", 3),
        ("isk", 2),
        ("huf", 2),
    ],
)
def test_decimal_places_follow_stripes_table(currency: str, places: int) -> None:
    assert decimal_places(currency) == places


def test_isk_and_three_decimal_currencies_charge_in_steps() -> None:
    assert charge_step("isk") == 100
    assert charge_step("kwd") == 10
    assert charge_step("usd") == 1


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("25", "usd", 2500),
        ("25.5", "usd", 2550),
        (" $10.00 ", "usd", 1000),
        ("3000", "jpy", 3000),
        ("1.234", "kwd", 1234),
        ("1,000", "usd", 100_000),
        ("1,000.50", "usd", 100_050),
        ("10,000", "jpy", 10_000),
        ("1,234,567.89", "usd", 123_456_789),
    ],
)
def test_parse_amount_gives_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency, "en") == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("25", "eur", 2500),
        ("25,50", "eur", 2550),
        ("1 000,50", "eur", 100_050),  # a plain space, as people type it
        ("1\u00a0000,50", "eur", 100_050),  # no-break space, CLDR's for ru
        ("1\u202f000,50", "eur", 100_050),  # narrow no-break space
        ("10 000", "jpy", 10_000),
        ("1 234 567,8", "usd", 123_456_780),
    ],
)
def test_parse_amount_reads_russian_numbers(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency, "ru") == minor


@pytest.mark.parametrize(
    ("text", "locale", "message"),
    [
        ("1,00", "en", "Enter the amount as in 1,000.50 or 25"),
        ("10,5", "en", "Enter the amount as in 1,000.50 or 25"),
        ("1.000,5", "en", "Enter the amount as in"),
        ("1,0000", "en", "Enter the amount as in"),
        ("01,000", "en", "Enter the amount as in"),
        ("1,000,00", "en", "Enter the amount as in"),
        ("1,000.", "en", "Enter the amount as in"),
        ("1,000.5,", "en", "Enter the amount as in"),
        ("10.000", "en", "Use at most 2 decimal places for USD"),  # ten thousand, in German?
        ("1 000", "en", "Enter an amount in digits"),
        ("1 00,5", "ru", "Enter the amount as in 1\u00a0000,50 or 25"),
        ("1.5", "ru", "Enter an amount in digits"),
        ("1 000.50", "ru", "Enter an amount in digits"),
        ("1,000", "ru", "Use at most 2 decimal places for USD"),
        ("1e3", "en", "Enter an amount in digits"),
        ("-5", "en", "Enter an amount in digits"),
        ("+5", "en", "Enter an amount in digits"),
        ("\u0661\u0660", "en", "Enter an amount in digits"),
        ("\uff11,\uff10\uff10\uff10", "en", "Enter an amount in digits"),
    ],
)
def test_parse_amount_refuses_what_is_ambiguous_in_the_locale(
    text: str, locale: str, message: str
) -> None:
    with pytest.raises(MoneyError, match=re.escape(message)):
        parse_amount(text, "usd", locale)


@given(minor=st.integers(min_value=1, max_value=10**12 - 1), locale=st.sampled_from(["en", "ru"]))
def test_an_amount_written_with_the_locales_grouping_reads_back(minor: int, locale: str) -> None:
    text = format_decimal(Decimal(minor).scaleb(-2), "#,##0.00", locale=locale)
    assert parse_amount(text, "usd", locale) == minor
    assert parse_amount(format_input(minor, "usd", locale), "usd", locale) == minor


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-5",
        "0",
        "0.00",
        "1e3",
        "ten",
        "1 000",
        "1,00",
        "\u0661\u0660",
        "\uff11",
        "NaN",
        "10.001",
    ],
)
def test_parse_amount_refuses_what_is_not_a_usd_amount(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, "usd", "en")


def test_parse_amount_refuses_decimals_in_a_zero_decimal_currency() -> None:
    with pytest.raises(MoneyError, match="whole numbers"):
        parse_amount("100.5", "jpy", "en")


def test_formats_for_csv_and_people() -> None:
    assert format_plain(2500, "usd") == "25.00"
    assert format_plain(2500, "jpy") == "2500"
    assert format_plain(12340, "kwd") == "12.340"
    assert format_plain(-500, "usd") == "-5.00"
    assert format_money(2500, "usd") == "$25.00"
    assert format_money(2500, "jpy") == "¥2,500"
    assert format_money(1050, "eur", "ru") == "10,50\xa0€"
    assert format_short(1000, "eur") == "€10"
    assert format_short(1050, "eur") == "€10.50"
    assert format_input(100_050, "eur", "ru") == "1000,50"
    assert format_input(2500, "usd", "en") == "25.00"
    assert format_input(3000, "jpy", "en") == "3000"


def test_covering_the_fee_leaves_the_newsroom_the_whole_gift() -> None:
    cover = FeeCover(rate_bp=290, fixed_minor=30)
    assert cover.extra_for(1000) == 61  # 10.61 - (2.9% of 10.61 = 0.31) - 0.30 = 10.00


@given(
    amount=st.integers(min_value=1, max_value=10**9),
    rate=st.integers(0, 1500),
    fixed=st.integers(0, 500),
)
def test_the_covered_fee_is_the_smallest_that_pays_stripes_cut(
    amount: int, rate: int, fixed: int
) -> None:
    extra = FeeCover(rate, fixed).extra_for(amount)
    total = amount + extra

    def kept(charged: int) -> int:
        # What is left after Stripe takes rate (rounded up, the worst case) and fixed part.
        return charged - -(-charged * rate // 10_000) - fixed

    assert kept(total) >= amount - 1  # Stripe rounds its fee half-up: at most a minor unit off
    assert extra >= 0
    assert kept(total - 1) < amount or extra == 0
