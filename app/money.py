"""Money as Stripe has it: an integer count of the currency's minor unit and a
lower-case ISO 4217 code.

This module owns Stripe's own table of decimal places and the conversions at
the edges (form input, CSV, display). It never uses floats and imports no
Flask and no `stripe`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale
from babel.numbers import (
    NumberFormatError,
    format_decimal,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
)

# Stripe's lists (docs.stripe.com/currencies), not a general currency library's:
# they disagree for ugx, isk, huf and twd.
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

# Amounts Stripe accepts for a charge must be multiples of this many minor
# units: ISK stays two-decimal in the API but only whole krónur are charged;
# three-decimal currencies must end in 0.
_CHARGE_STEP = {"isk": 100, **{code: 10 for code in THREE_DECIMAL}}

_CURRENCY_CODE = re.compile(r"[a-z]{3}", re.ASCII)
_ASCII_DIGITS = "0123456789"
# Space-like group separators: CLDR gives ru a no-break space (some data a
# narrow one); people type a plain space. Any of them is a group separator
# where the locale's is one of them.
_SPACES = "\u00a0\u202f "
_CURRENCY_SYMBOLS = ("$", "€", "£", "¥", "₽")


def N_(text: str) -> str:
    """Marks a message for the catalogs (babel.cfg); translated where shown."""
    return text


class MoneyError(ValueError):
    """Input that is not an amount of money in the given currency. `message`
    is the English text with %(name)s placeholders and `values` fill them, so
    a page can translate it (str() is the English)."""

    def __init__(self, message: str, **values: str) -> None:
        self.message = message
        self.values = values
        super().__init__(message % values if values else message)


def decimal_places(currency: str) -> int:
    """How many places Stripe gives `currency` in its API."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def charge_step(currency: str) -> int:
    """The multiple of minor units a charge in `currency` must be."""
    return _CHARGE_STEP.get(currency.lower(), 1)


def is_currency_code(value: str) -> bool:
    return bool(_CURRENCY_CODE.fullmatch(value))


@dataclass(frozen=True)
class NumberSymbols:
    """How a locale writes an amount: its decimal sign and the characters
    accepted between groups of three digits. static/donate.js gets the same
    (data attributes) and parses by the same rule as `parse_amount`."""

    decimal: str
    group: str  # the locale's own group separator
    groups: str  # every character accepted as one

    @classmethod
    def of(cls, locale: str) -> NumberSymbols:
        decimal = get_decimal_symbol(locale)
        group = get_group_symbol(locale)
        return cls(decimal, group, _SPACES if group in _SPACES else group)

    def pattern(self) -> re.Pattern[str]:
        """Digits, either ungrouped or grouped in threes (the first group 1-3
        digits, no leading zero), then optionally the decimal sign and digits.
        At most 12 digits before the decimal sign."""
        group = "[" + re.escape(self.groups) + "]"
        return re.compile(
            rf"(?P<whole>\d{{1,12}}|[1-9]\d{{0,2}}(?:{group}\d{{3}}){{1,3}})"
            rf"(?:{re.escape(self.decimal)}(?P<fraction>\d{{1,12}}))?",
            re.ASCII,
        )


def parse_amount(text: str, currency: str, locale: str) -> int:
    """Turn what a person typed on a page in `locale` into minor units:
    "1,000.50" in English, "1 000,50" in Russian.

    Strict, so a typed amount is never read as another: the locale's decimal
    sign, its group separator only between groups of three, ASCII digits, no
    sign or exponent, at most the currency's decimal places (trailing zeros
    count: "10.000" may be ten thousand). Raises MoneyError with a message fit
    for the person otherwise."""
    symbols = NumberSymbols.of(locale)
    cleaned = text.strip()
    for symbol in _CURRENCY_SYMBOLS:
        cleaned = cleaned.removeprefix(symbol).removesuffix(symbol).strip()
    example = format_decimal(Decimal("1000.50"), "#,##0.00", locale=locale)
    if not cleaned or any(
        ch not in _ASCII_DIGITS + symbols.decimal + symbols.groups for ch in cleaned
    ):
        raise MoneyError(
            N_("Enter an amount in digits, such as 25 or %(example)s."), example=example
        )
    match = symbols.pattern().fullmatch(cleaned)
    unclear = MoneyError(
        N_(
            "Enter the amount as in %(example)s or 25: “%(decimal)s” before the "
            "decimals, thousands apart in groups of three."
        ),
        example=example,
        decimal=symbols.decimal,
    )
    if match is None:
        raise unclear
    whole = "".join(ch for ch in match.group("whole") if ch in _ASCII_DIGITS)
    fraction = match.group("fraction") or ""
    # Babel's strict reading agrees (it checks the grouping against CLDR's).
    localised = match.group(0)
    for space in symbols.groups:
        localised = localised.replace(space, symbols.group)
    try:
        value = parse_decimal(localised, locale=locale, strict=True)
    except NumberFormatError as exc:
        raise unclear from exc
    if value != Decimal(f"{whole}.{fraction or '0'}"):  # pragma: no cover - defensive
        raise unclear
    places = decimal_places(currency)
    if len(fraction) > places:
        if places == 0:
            raise MoneyError(
                N_("%(currency)s amounts are whole numbers."), currency=currency.upper()
            )
        raise MoneyError(
            N_("Use at most %(places)s decimal places for %(currency)s."),
            places=str(places),
            currency=currency.upper(),
        )
    minor = int(value.scaleb(places))
    if minor <= 0:
        raise MoneyError(N_("Enter an amount greater than zero."))
    return minor


def parse_plain(text: str, currency: str) -> int:
    """An amount as format_plain writes it ("25.00", "2500"): preset values
    and links, whatever the page's language."""
    return parse_amount(text, currency, "en")


def format_input(minor: int, currency: str, locale: str) -> str:
    """An amount as a person would type it on a page in `locale`, for a
    pre-filled field: "17.50", "1000,50" (no grouping), read back by
    parse_amount."""
    places = decimal_places(currency)
    pattern = "0." + "0" * places if places else "0"
    text: str = format_decimal(to_decimal(minor, currency), pattern, locale=locale)
    return text


def to_decimal(minor: int, currency: str) -> Decimal:
    """Minor units as a Decimal in the major unit, with Stripe's places."""
    places = decimal_places(currency)
    return Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def format_plain(minor: int, currency: str) -> str:
    """`2500, "usd"` -> "25.00"; `2500, "jpy"` -> "2500" (CSV and JSON)."""
    return str(to_decimal(minor, currency))


def _format(minor: int, currency: str, locale: str, places: int) -> str:
    # The locale's own currency pattern (symbol position, separators), with
    # Stripe's number of places instead of CLDR's.
    babel_locale = Locale.parse(locale)
    pattern = copy(babel_locale.currency_formats["standard"])
    pattern.frac_prec = (places, places)
    text: str = pattern.apply(
        to_decimal(minor, currency), babel_locale, currency=currency.upper(), currency_digits=False
    )
    return text


def format_money(minor: int, currency: str, locale: str = "en") -> str:
    """For people: "$25.00", "25,00 €", "¥2,500", per locale, with Stripe's places."""
    return _format(minor, currency, locale, decimal_places(currency))


def format_short(minor: int, currency: str, locale: str = "en") -> str:
    """Like format_money, but whole amounts drop their ".00" ("€10", "€10.50")."""
    places = decimal_places(currency)
    whole = minor % (10**places) == 0
    return _format(minor, currency, locale, 0 if whole else places)


@dataclass(frozen=True)
class FeeCover:
    """A processing fee (what Stripe takes from a charge) and what a donor adds
    to cover it: rate in basis points plus a fixed part in minor units."""

    rate_bp: int
    fixed_minor: int

    @classmethod
    def from_table(cls, table: Mapping[str, Mapping[str, int]], currency: str) -> FeeCover:
        """The entry of a `[processing_fees.<cur>]` table (rate_bp, fixed)."""
        entry = table[currency]
        return cls(int(entry["rate_bp"]), int(entry["fixed"]))

    def fee_on(self, amount_minor: int) -> int:
        """The fee on a charge of `amount_minor`: the rate rounded half up, plus
        the fixed part."""
        return (amount_minor * self.rate_bp + 5_000) // 10_000 + self.fixed_minor

    def extra_for(self, amount_minor: int) -> int:
        """What to add so that after Stripe takes rate and fixed part, the
        newsroom keeps `amount_minor`: ceil((a + f) / (1 - r)) - a, in integers."""
        if not 0 <= self.rate_bp < 10_000:
            raise ValueError("fee rate must be in [0, 10000) basis points")
        total = -(-(amount_minor + self.fixed_minor) * 10_000 // (10_000 - self.rate_bp))
        return total - amount_minor
