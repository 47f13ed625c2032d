"""Card testing held to the caps (app.guard): bot bursts from one address, with
a forged or rotating X-Forwarded-For and from many addresses create no more
Checkout Sessions than the caps allow (counted at HTTP, where Stripe is
stubbed); two app instances on one Redis share the caps; the honeypot; the
CAPTCHA (Turnstile's siteverify stubbed at HTTP) before any Stripe call; the
minimum amounts; the 429 page.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app import create_app
from app.donate.models import Checkout
from tests.conftest import REDIS_URL
from tests.integration.test_donate import SESSIONS_URL, checkout_session, count, hidden

SITEVERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
CAPS = {
    "DONOR_FORM_LIMIT_PER_ADDRESS": "5 per hour",
    "DONOR_FORM_LIMIT_PER_EMAIL": "3 per hour",
    "DONOR_FORM_LIMIT_SITE": "8 per hour",
}
TURNSTILE = {
    "TURNSTILE_SITE_KEY": "1x00000000000000000000AA",
    "TURNSTILE_SECRET_KEY": "1x0000000000000000000000000000000AA",
}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**CAPS, **app_config}  # a test's own settings marker wins


@pytest.fixture
def sessions(stripe_http: responses.RequestsMock) -> Iterator[list[str]]:
    """Stripe's Checkout Sessions endpoint, answering a new session each call;
    the list holds what was created, so a test counts them at HTTP."""
    made: list[str] = []

    def create(request: Any) -> tuple[int, dict[str, str], str]:
        session_id = f"cs_test_burst{len(made):06d}"
        made.append(session_id)
        body = checkout_session(
            id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}"
        )
        return 200, {}, json.dumps(body)

    stripe_http.add_callback(responses.POST, SESSIONS_URL, callback=create)
    yield made


def token_of(client: FlaskClient, **environ: Any) -> str:
    html = client.get("/donate", environ_base=environ or None).get_data(as_text=True)
    return hidden(html, "csrf_token")


def gift(token: str, n: int, **fields: Any) -> dict[str, Any]:
    """The n-th post of a script: its own nonce, email and amount, as card
    testers vary them."""
    data = {
        "csrf_token": token,
        "nonce": f"burst-{n:012d}-nonce",
        "frequency": "once",
        "currency": "usd",
        "amount": str(1 + n % 50),
        "email": f"tester{n}@example.net",
        "name": "Card Tester",
    }
    data.update(fields)
    return data


def burst(
    client: FlaskClient, posts: int, environ: Any, headers: Any = None, **fields: Any
) -> dict[int, int]:
    """`posts` form posts; `environ` and `headers` are functions of n."""
    token = token_of(client, **environ(0))
    statuses: dict[int, int] = {}
    for n in range(posts):
        response = client.post(
            "/donate",
            data=gift(token, n, **fields),
            environ_base=environ(n),
            headers=headers(n) if headers else None,
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


# --- bot bursts ---------------------------------------------------------------


def test_a_thousand_posts_from_one_address_start_only_the_address_cap(
    client: FlaskClient, sessions: list[str], db: Session
) -> None:
    statuses = burst(client, 1000, lambda n: {"REMOTE_ADDR": "198.51.100.7"})
    assert len(sessions) == 5
    assert statuses == {303: 5, 429: 995}
    assert count(db, Checkout) == 5


def test_a_rotating_forged_x_forwarded_for_changes_nothing_without_trusted_proxies(
    client: FlaskClient, sessions: list[str]
) -> None:
    statuses = burst(
        client,
        1000,
        lambda n: {"REMOTE_ADDR": "198.51.100.7"},
        headers=lambda n: {"X-Forwarded-For": f"203.0.{n // 250}.{n % 250}"},
    )
    assert len(sessions) == 5
    assert statuses[429] == 995


@pytest.mark.settings(TRUSTED_PROXY_HOPS=1)
def test_behind_a_proxy_only_the_hop_it_added_counts(
    client: FlaskClient, sessions: list[str]
) -> None:
    # The client writes any X-Forwarded-For it likes; our proxy appends the
    # address it saw, and ProxyFix trusts that one hop only.
    statuses = burst(
        client,
        200,
        lambda n: {"REMOTE_ADDR": "10.0.0.2"},
        headers=lambda n: {"X-Forwarded-For": f"203.0.113.{n % 250}, 198.51.100.7"},
    )
    assert len(sessions) == 5
    assert statuses[429] == 195


def test_one_email_from_many_addresses_is_held_to_the_email_cap(
    client: FlaskClient, sessions: list[str]
) -> None:
    statuses = burst(
        client,
        200,
        lambda n: {"REMOTE_ADDR": f"203.0.{n // 250}.{n % 250}"},
        email="Victim@Example.net",
    )
    assert len(sessions) == 3
    assert statuses[429] == 197


def test_many_addresses_and_emails_are_held_to_the_site_cap(
    client: FlaskClient, sessions: list[str]
) -> None:
    statuses = burst(client, 200, lambda n: {"REMOTE_ADDR": f"203.0.{n // 250}.{n % 250}"})
    assert len(sessions) == 8
    assert statuses == {303: 8, 429: 192}


@pytest.mark.settings(DONOR_FORM_LIMIT_SITE="2 per hour")
def test_junk_does_not_use_up_the_site_cap(client: FlaskClient, sessions: list[str]) -> None:
    junk = burst(client, 50, lambda n: {"REMOTE_ADDR": f"203.0.113.{n}"}, amount="not money")
    assert junk == {400: 50}
    real = burst(client, 3, lambda n: {"REMOTE_ADDR": f"198.51.100.{n}"})
    assert real == {303: 2, 429: 1}
    assert len(sessions) == 2


# --- several instances, one Redis ---------------------------------------------


def test_two_instances_on_one_redis_share_the_caps(
    app_config: dict[str, Any],
    redis_prefix: str,
    sessions: list[str],
) -> None:
    config = {
        **app_config,
        **TURNSTILE,
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": redis_prefix,
        "CAPTCHA_AFTER_PER_ADDRESS": "100 per hour",
    }
    first, second = create_app(config), create_app(config)
    try:
        clients = [first.test_client(), second.test_client()]
        tokens = [token_of(c, REMOTE_ADDR="198.51.100.9") for c in clients]
        statuses = []
        for n, which in zip(range(40), itertools.cycle([0, 1]), strict=False):
            response = clients[which].post(
                "/donate",
                data=gift(tokens[which], n, **{"cf-turnstile-response": ""}),
                environ_base={"REMOTE_ADDR": "198.51.100.9"},
            )
            statuses.append(response.status_code)
        assert len(sessions) == 5  # not 5 per instance
        assert statuses.count(303) == 5 and statuses.count(429) == 35

        import redis

        connection = redis.Redis.from_url(REDIS_URL)
        keys = [k.decode() for k in connection.scan_iter(match=f"*{redis_prefix}*")]
        connection.close()
        assert keys
        assert not [k for k in keys if "example.net" in k]  # emails are hashed
    finally:
        first.extensions["donations.db"].dispose()
        second.extensions["donations.db"].dispose()


def test_the_captcha_threshold_is_shared_through_redis(
    app_config: dict[str, Any],
    redis_prefix: str,
    sessions: list[str],
) -> None:
    config = {
        **app_config,
        **TURNSTILE,
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": redis_prefix,
        "CAPTCHA_AFTER_PER_ADDRESS": "2 per hour",
    }
    first, second = create_app(config), create_app(config)
    try:
        one, other = first.test_client(), second.test_client()
        token = token_of(one, REMOTE_ADDR="198.51.100.10")
        for n in range(2):
            one.post("/donate", data=gift(token, n), environ_base={"REMOTE_ADDR": "198.51.100.10"})
        page = other.get("/donate", environ_base={"REMOTE_ADDR": "198.51.100.10"})
        assert 'class="cf-turnstile"' in page.get_data(as_text=True)
        assert len(sessions) == 2
    finally:
        first.extensions["donations.db"].dispose()
        second.extensions["donations.db"].dispose()
