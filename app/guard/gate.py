"""Wires app.guard into the app: the caps on every endpoint named in
`donor_form_endpoints` (on the app's one Flask-Limiter), the 429 page, the
honeypot and CAPTCHA checks a form's view asks for (`screen_submission`), and
Turnstile's script allowed by the CSP on the pages that show it. Never logs an email.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, g, render_template, request
from flask_limiter import RateLimitExceeded
from limits import RateLimitItem
from werkzeug.wrappers import Response

from app.extensions import client_address, init_limiter, limiter
from app.guard.captcha import SCRIPT_ORIGIN, TOKEN_FIELD, Turnstile
from app.guard.limits import DonorFormLimits, address_key, email_key

log = logging.getLogger(__name__)

HONEYPOT_FIELD = "homepage"  # hidden by CSS (class guard-hp); people leave it empty
THRESHOLD_SCOPE = "captcha-threshold"  # one count for every donor form


@dataclass
class Screening:
    """What the guard makes of one submission of a donor form."""

    bot: bool  # the honeypot was filled in: refuse quietly, call nobody
    captcha_needed: bool  # past a threshold, with Turnstile configured
    verified: bool | None = field(default=None)

    def captcha_passed(self) -> bool:
        """True when no CAPTCHA is needed or the token is good (asked once per
        request; a token can be used only once). Call it before any Stripe call."""
        if not self.captcha_needed:
            return True
        if self.verified is None:
            turnstile = turnstile_settings()
            assert turnstile is not None
            self.verified = turnstile.verify(request.form.get(TOKEN_FIELD, ""), client_address())
        return self.verified


def turnstile_settings() -> Turnstile | None:
    found: Turnstile | None = current_app.extensions.get("donations.turnstile")
    return found


def donor_form_limits() -> DonorFormLimits:
    return donor_form_limits_of(current_app)


def screen_submission() -> Screening:
    """For the POST of a donor form: counts it towards the CAPTCHA thresholds
    (once per request) and says whether it is a bot or needs the CAPTCHA."""
    screening: Screening | None = g.get("guard_screening")
    if screening is None:
        bot = bool(request.form.get(HONEYPOT_FIELD, "").strip())
        needed = turnstile_settings() is not None and _past_threshold(count=True)
        screening = Screening(bot=bot, captcha_needed=needed)
        g.guard_screening = screening
        if bot:
            log.info("guard: honeypot filled on %s; refused quietly", request.endpoint)
    return screening


def captcha_site_key() -> str:
    """For templates: the site key when this page must show the widget (the
    address or the site is past a threshold), else "". Showing it lets
    Turnstile's script through this page's CSP."""
    turnstile = turnstile_settings()
    if turnstile is None:
        return ""
    screening: Screening | None = g.get("guard_screening")
    needed = screening.captcha_needed if screening else _past_threshold(count=False)
    if not needed:
        return ""
    g.guard_widget = True
    return turnstile.site_key


def _threshold_keys() -> list[tuple[RateLimitItem, list[str]]]:
    caps = donor_form_limits()
    prefix = str(current_app.config["RATE_LIMIT_KEY_PREFIX"])
    address = [
        (item, [prefix, THRESHOLD_SCOPE, "address", _address_key()])
        for item in caps.captcha_after_per_address
    ]
    site = [(item, [prefix, THRESHOLD_SCOPE, "site"]) for item in caps.captcha_after_site]
    return address + site


def _past_threshold(*, count: bool) -> bool:
    """Whether this address or the whole site has passed a CAPTCHA threshold;
    with `count`, this submission counts too. If the store fails, ask."""
    strategy = limiter().limiter
    try:
        if count:
            return not all([strategy.hit(item, *keys) for item, keys in _threshold_keys()])
        return not all(strategy.test(item, *keys) for item, keys in _threshold_keys())
    except Exception as exc:  # a storage error must not let a bot through unasked
        log.warning("guard: threshold store failed: %s", type(exc).__name__)
        return True


def _address_key() -> str:
    # Once per request: Flask-Limiter's limits and the CAPTCHA thresholds each ask.
    key: str | None = g.get("guard_address_key")
    if key is None:
        key = g.guard_address_key = address_key(client_address())
    return key


def _email_key() -> str:
    key: str | None = g.get("guard_email_key")  # once per request, as the address's
    if key is None:
        email = request.form.get("email", "")
        if not email.strip():
            key = f"no-email:{client_address()}"
        else:
            key = email_key(email, str(current_app.config["SECRET_KEY"]))
        g.guard_email_key = key
    return key


def _site_key() -> str:
    return "site"


def _counts_site_wide(response: Response) -> bool:
    """Only what got through (a Checkout started, a link sent) uses the
    site-wide cap, so a flood of junk cannot lock real donors out."""
    return response.status_code < 400


def retry_after_seconds() -> int:
    current = limiter().current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def _too_many(exc: RateLimitExceeded) -> tuple[str, int, dict[str, str]]:
    seconds = retry_after_seconds()
    log.info("guard: %s limited (%s)", request.endpoint, exc.limit.limit)
    staff = (request.endpoint or "").startswith("auth.")
    page = render_template(
        "errors/429.html", minutes=max(1, round(seconds / 60)), staff=staff, status=429
    )
    return page, 429, {"Retry-After": str(seconds)}


def _allow_widget_script(response: Response) -> Response:
    """Turnstile's script and frame, on the pages that show the widget only."""
    if g.get("guard_widget"):
        policy = response.headers.get("Content-Security-Policy", "")
        parts = [p.strip() for p in policy.split(";") if p.strip()]
        for directive in ("script-src", "frame-src"):
            for i, part in enumerate(parts):
                if part.split(" ", 1)[0] == directive:
                    parts[i] = f"{part} {SCRIPT_ORIGIN}"
                    break
            else:
                parts.append(f"{directive} {SCRIPT_ORIGIN}")
        response.headers["Content-Security-Policy"] = "; ".join(parts)
    return response


def limit_donor_form(app: Flask, endpoint: str) -> bool:
    """Put the donor-form caps (per address, per email, site-wide) on the POSTs
    of `endpoint`; init_app does it for every endpoint in donor_form_endpoints
    that is registered. False when the app has no such endpoint."""
    view: Any = app.view_functions.get(endpoint)
    if view is None:
        return False
    if getattr(view, "guard_limited", False):  # once: a second wrap would count twice
        return True
    caps = donor_form_limits_of(app)
    shared = app.extensions["donations.limiter"]
    if caps.per_address:
        view = shared.limit(caps.per_address, key_func=_address_key, methods=["POST"])(view)
    if caps.per_email:
        view = shared.limit(caps.per_email, key_func=_email_key, methods=["POST"])(view)
    if caps.site:
        view = shared.limit(
            caps.site, key_func=_site_key, methods=["POST"], deduct_when=_counts_site_wide
        )(view)
    view.guard_limited = True
    app.view_functions[endpoint] = view
    return True


def donor_form_limits_of(app: Flask) -> DonorFormLimits:
    caps: DonorFormLimits = app.extensions["donations.donor_form_limits"]
    return caps


def init_app(app: Flask) -> None:
    """After every blueprint (and the staff gate, which makes the limiter)."""
    app.extensions["donations.donor_form_limits"] = DonorFormLimits.from_config(app.config)
    app.extensions["donations.turnstile"] = Turnstile.from_config(app.config)
    if "donations.limiter" not in app.extensions:
        init_limiter(app)
    for endpoint in donor_form_limits_of(app).endpoints:
        limit_donor_form(app, endpoint)
    app.register_error_handler(RateLimitExceeded, _too_many)
    # Flask runs after_request hooks last-registered first; this one must see
    # the header Talisman writes, so it goes to the front of the list.
    app.after_request_funcs.setdefault(None, []).insert(0, _allow_widget_script)
    app.jinja_env.globals.update(captcha_site_key=captcha_site_key, honeypot_field=HONEYPOT_FIELD)
