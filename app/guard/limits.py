"""The caps on the donor forms, read from the settings and checked at start:
hard limits (per address, per email, site-wide) and the thresholds past which
the CAPTCHA is asked for. Pure data and the `limits` library; no Flask, and an
email is only ever a keyed hash here, never stored or logged as typed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many

from app.donors.identity import normalise_email
from app.settings import ConfigError

SETTINGS = (
    "DONOR_FORM_LIMIT_PER_ADDRESS",
    "DONOR_FORM_LIMIT_PER_EMAIL",
    "DONOR_FORM_LIMIT_SITE",
    "CAPTCHA_AFTER_PER_ADDRESS",
    "CAPTCHA_AFTER_SITE",
)


def parse_caps(name: str, value: Any) -> list[RateLimitItem]:
    """A Flask-Limiter limit string ("10 per minute;30 per hour"); empty: none."""
    text = str(value or "").strip()
    if not text:
        return []
    try:
        return list(parse_many(text))
    except ValueError as exc:
        raise ConfigError(
            f"{name.lower()} must read like '10 per minute;30 per hour', not {text!r}"
        ) from exc


@dataclass(frozen=True)
class DonorFormLimits:
    """What the settings say; the strings are what Flask-Limiter takes."""

    endpoints: tuple[str, ...]
    per_address: str
    per_email: str
    site: str
    captcha_after_per_address: list[RateLimitItem]
    captcha_after_site: list[RateLimitItem]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DonorFormLimits:
        for name in SETTINGS:
            parse_caps(name, config.get(name))  # refuse a bad string at start
        endpoints = config.get("DONOR_FORM_ENDPOINTS") or []
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise ConfigError("donor_form_endpoints must be a list of endpoint names")
        return cls(
            endpoints=tuple(endpoints),
            per_address=str(config.get("DONOR_FORM_LIMIT_PER_ADDRESS") or "").strip(),
            per_email=str(config.get("DONOR_FORM_LIMIT_PER_EMAIL") or "").strip(),
            site=str(config.get("DONOR_FORM_LIMIT_SITE") or "").strip(),
            captcha_after_per_address=parse_caps(
                "CAPTCHA_AFTER_PER_ADDRESS", config.get("CAPTCHA_AFTER_PER_ADDRESS")
            ),
            captcha_after_site=parse_caps("CAPTCHA_AFTER_SITE", config.get("CAPTCHA_AFTER_SITE")),
        )


def email_key(email: str, secret: str) -> str:
    """The key a per-email cap counts under: a keyed hash of the normalised
    address, so the rate-limit store and its log lines never hold an email."""
    digest = hmac.new(
        secret.encode(), f"rate-limit-email:{normalise_email(email)}".encode(), hashlib.sha256
    )
    return f"email:{digest.hexdigest()[:32]}"


def address_key(address: str) -> str:
    """The key a per-address cap counts under: the IPv4 address, or the /64 an
    IPv6 address is in (one subscriber holds a whole /64 and can rotate in it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
