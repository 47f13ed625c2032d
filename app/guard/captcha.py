"""Cloudflare Turnstile, checked on the server: one POST of the widget's token
to siteverify. No Flask; it never logs the token or the secret, and any doubt
(a timeout, an error, an answer that is not JSON) counts as not verified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

TOKEN_FIELD = "cf-turnstile-response"  # noqa: S105  (the field the widget adds to its form)
SCRIPT_ORIGIN = "https://challenges.cloudflare.com"
MAX_TOKEN_LENGTH = 2048  # Cloudflare's own limit on a token


@dataclass(frozen=True)
class Turnstile:
    site_key: str
    secret_key: str
    verify_url: str
    timeout_seconds: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Turnstile | None:
        """None unless both keys are set: without them no CAPTCHA is asked for."""
        site_key = str(config.get("TURNSTILE_SITE_KEY") or "").strip()
        secret_key = str(config.get("TURNSTILE_SECRET_KEY") or "").strip()
        if not site_key or not secret_key:
            return None
        return cls(
            site_key=site_key,
            secret_key=secret_key,
            verify_url=str(config["TURNSTILE_VERIFY_URL"]),
            timeout_seconds=float(config["TURNSTILE_TIMEOUT_SECONDS"]),
        )

    def verify(self, token: str, remote_ip: str | None) -> bool:
        """True only when Cloudflare says this token is good (each token once)."""
        token = token.strip()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return False
        data = {"secret": self.secret_key, "response": token}
        if remote_ip:
            data["remoteip"] = remote_ip
        try:
            answer = requests.post(self.verify_url, data=data, timeout=self.timeout_seconds)
            answer.raise_for_status()
            body = answer.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("turnstile: siteverify failed: %s", type(exc).__name__)
            return False
        if not isinstance(body, dict) or body.get("success") is not True:
            codes = body.get("error-codes") if isinstance(body, dict) else None
            log.info("turnstile: token refused: %s", codes)
            return False
        return True
