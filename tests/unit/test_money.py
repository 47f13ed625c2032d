"""Money at the edges: parsing what people type, Stripe's decimal places,
formatting, and the fee a donor may cover. Integers all the way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money import (
    FeeCover,
    MoneyError,
    charge_step,
    decimal_places,
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
        ("25,50", "eur", 2550),
        (" $10.00 ", "usd", 1000),
        ("10.000", "usd", 1000),
        ("3000", "jpy", 3000),
        ("1.234", "kwd", 1234),
    ],
)
def test_parse_amount_gives_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


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
        "1,000.00",
        "\u0661\u0660",
        "\uff11",
        "NaN",
        "10.001",
    ],
)
def test_parse_amount_refuses_what_is_not_a_usd_amount(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, "usd")


def test_parse_amount_refuses_decimals_in_a_zero_decimal_currency() -> None:
    with pytest.raises(MoneyError, match="whole numbers"):
        parse_amount("100.5", "jpy")


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
