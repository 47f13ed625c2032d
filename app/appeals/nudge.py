"""The nudge to recurring: the monthly equivalent of a one-time gift ("€30
once, or €10 every month?"), offered on the form and, after a one-time gift,
on the thanks page.

No Flask; integers in minor units only.
"""

from __future__ import annotations

from collections.abc import Mapping

ROUNDING_UNIT = 100  # minor units: whole dollars, euros, pounds; ¥100


def monthly_equivalent(
    once_minor: int, divisor: int, limits: Mapping[str, int], monthly_presets: list[int]
) -> int | None:
    """A one-time gift divided by `divisor`, rounded half up to a whole unit
    (a monthly preset when one is that amount), within the currency's limits;
    None when there is no sensible monthly amount."""
    if divisor < 1 or once_minor <= 0:
        return None
    share = (2 * once_minor + divisor) // (2 * divisor)  # half up
    rounded = (2 * share + ROUNDING_UNIT) // (2 * ROUNDING_UNIT) * ROUNDING_UNIT
    amount = rounded or share
    if amount in monthly_presets:
        return amount
    if not limits["min"] <= amount <= limits["max"]:
        return None
    return amount
