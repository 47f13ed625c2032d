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
from decimal import Decimal, InvalidOperation

from babel import Locale

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
# ASCII digits only (Decimal() would take Arabic-Indic or full-width digits),
# an optional decimal point or comma, no signs, no exponents, no separators.
_AMOUNT_TEXT = re.compile(r"(\d{1,12})(?:[.,](\d{1,12}))?", re.ASCII)


class MoneyError(ValueError):
    """Input that is not an amount of money in the given currency."""


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


def parse_amount(text: str, currency: str) -> int:
    """Turn what a person typed ("10", "10.50", "10,5") into minor units.

    Raises MoneyError with a message fit for the person when it is not a
    positive amount with at most the currency's decimal places.
    """
    cleaned = text.strip()
    for symbol in ("$", "€", "£", "¥"):
        cleaned = cleaned.removeprefix(symbol).strip()
    match = _AMOUNT_TEXT.fullmatch(cleaned)
    if match is None:
        raise MoneyError("Enter an amount in digits, such as 25 or 25.50.")
    whole, fraction = match.group(1), match.group(2) or ""
    places = decimal_places(currency)
    fraction = fraction.rstrip("0")
    if len(fraction) > places:
        if places == 0:
            raise MoneyError(f"{currency.upper()} amounts are whole numbers.")
        raise MoneyError(f"Use at most {places} decimal places for {currency.upper()}.")
    try:
        value = Decimal(f"{whole}.{fraction or '0'}")
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise MoneyError("Enter an amount in digits.") from exc
    minor = int(value.scaleb(places))
    if minor <= 0:
        raise MoneyError("Enter an amount greater than zero.")
    return minor


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
