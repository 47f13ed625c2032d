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
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app import create_app
from app.donate.models import Checkout
from app.extensions import csrf
from app.guard.gate import limit_donor_form
from app.settings import ConfigError
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
    html = client.get("/donate", environ_base=environ).get_data(as_text=True)
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


# --- the CAPTCHA --------------------------------------------------------------


def siteverify(stripe_http: responses.RequestsMock, good: set[str]) -> list[dict[str, str]]:
    """Turnstile's siteverify, stubbed at HTTP: a token in `good` passes once
    (Cloudflare's tokens are single use). Returns what it was sent."""
    asked: list[dict[str, str]] = []

    def verify(request: Any) -> tuple[int, dict[str, str], str]:
        sent = dict(parse_qsl(request.body))
        asked.append(sent)
        ok = sent.get("secret") == TURNSTILE["TURNSTILE_SECRET_KEY"] and sent["response"] in good
        good.discard(sent["response"])
        return (
            200,
            {},
            json.dumps({"success": ok, "error-codes": [] if ok else ["invalid-input-response"]}),
        )

    stripe_http.add_callback(responses.POST, SITEVERIFY_URL, callback=verify)
    return asked


def shows_widget(response: Any) -> bool:
    html = response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    widget = 'class="cf-turnstile"' in html
    allowed = "challenges.cloudflare.com" in csp
    assert widget == allowed, "the CSP allows Turnstile exactly where the widget is"
    if widget:
        assert re.search(r"script-src 'self' https://challenges\.cloudflare\.com(;|$)", csp)
        assert re.search(r"frame-src https://challenges\.cloudflare\.com(;|$)", csp)
        assert 'src="https://challenges.cloudflare.com/turnstile/v0/api.js"' in html
    return widget


ADDRESS = {"REMOTE_ADDR": "198.51.100.20"}


@pytest.mark.settings(
    **TURNSTILE, CAPTCHA_AFTER_PER_ADDRESS="2 per hour", DONOR_FORM_LIMIT_PER_ADDRESS="20 per hour"
)
def test_past_the_threshold_no_stripe_call_happens_without_a_valid_captcha(
    client: FlaskClient, stripe_http: responses.RequestsMock, sessions: list[str], db: Session
) -> None:
    asked = siteverify(stripe_http, good={"good-token"})
    assert not shows_widget(client.get("/donate", environ_base=ADDRESS))  # most donors never see it
    token = token_of(client, **ADDRESS)
    for n in range(2):
        assert client.post("/donate", data=gift(token, n), environ_base=ADDRESS).status_code == 303
    assert asked == [] and len(sessions) == 2

    assert shows_widget(client.get("/donate", environ_base=ADDRESS))
    # A script past the threshold: no token, a forged one, one used already.
    for n, fields in enumerate(
        [{}, {"cf-turnstile-response": "forged"}, {"cf-turnstile-response": "x" * 3000}], start=2
    ):
        response = client.post("/donate", data=gift(token, n, **fields), environ_base=ADDRESS)
        assert response.status_code == 400
        assert "complete the check that you are not a robot" in response.get_data(as_text=True)
        assert shows_widget(response)
    assert len(sessions) == 2 and count(db, Checkout) == 2
    assert [a["response"] for a in asked] == ["forged"]  # nothing sent for an empty or huge token

    passed = client.post(
        "/donate",
        data=gift(token, 9, **{"cf-turnstile-response": "good-token"}),
        environ_base=ADDRESS,
    )
    assert passed.status_code == 303 and len(sessions) == 3
    assert asked[-1] == {
        "secret": TURNSTILE["TURNSTILE_SECRET_KEY"],
        "response": "good-token",
        "remoteip": "198.51.100.20",
    }
    replayed = client.post(
        "/donate",
        data=gift(token, 10, **{"cf-turnstile-response": "good-token"}),
        environ_base=ADDRESS,
    )
    assert replayed.status_code == 400 and len(sessions) == 3


@pytest.mark.settings(**TURNSTILE, CAPTCHA_AFTER_PER_ADDRESS="1 per hour", CAPTCHA_AFTER_SITE="")
def test_a_burst_past_the_threshold_without_tokens_makes_no_stripe_call(
    client: FlaskClient, stripe_http: responses.RequestsMock, sessions: list[str]
) -> None:
    asked = siteverify(stripe_http, good=set())
    statuses = burst(
        client, 300, lambda n: {"REMOTE_ADDR": "198.51.100.21"}, **{"cf-turnstile-response": "junk"}
    )
    assert len(sessions) == 1  # the one before the threshold
    assert statuses == {303: 1, 400: 4, 429: 295}  # the address cap still holds
    assert len(asked) == 4


@pytest.mark.settings(**TURNSTILE, CAPTCHA_AFTER_PER_ADDRESS="", CAPTCHA_AFTER_SITE="3 per hour")
def test_past_the_site_threshold_every_address_is_asked(
    client: FlaskClient, stripe_http: responses.RequestsMock, sessions: list[str]
) -> None:
    siteverify(stripe_http, good=set())
    burst(client, 3, lambda n: {"REMOTE_ADDR": f"203.0.113.{n}"})
    assert len(sessions) == 3
    assert shows_widget(client.get("/donate", environ_base={"REMOTE_ADDR": "192.0.2.50"}))
    statuses = burst(client, 5, lambda n: {"REMOTE_ADDR": f"192.0.2.{n}"})
    assert statuses == {400: 5} and len(sessions) == 3


@pytest.mark.settings(**TURNSTILE, CAPTCHA_AFTER_PER_ADDRESS="1 per hour")
def test_siteverify_unreachable_counts_as_not_verified(
    client: FlaskClient, stripe_http: responses.RequestsMock, sessions: list[str]
) -> None:
    stripe_http.post(SITEVERIFY_URL, status=503)
    statuses = burst(
        client, 3, lambda n: {"REMOTE_ADDR": "198.51.100.22"}, **{"cf-turnstile-response": "t"}
    )
    assert statuses == {303: 1, 400: 2} and len(sessions) == 1


@pytest.mark.settings(CAPTCHA_AFTER_PER_ADDRESS="1 per hour")
def test_without_turnstile_keys_no_captcha_is_ever_asked(
    client: FlaskClient, sessions: list[str]
) -> None:
    statuses = burst(client, 4, lambda n: {"REMOTE_ADDR": "198.51.100.23"})
    assert statuses == {303: 4}
    assert not shows_widget(client.get("/donate", environ_base={"REMOTE_ADDR": "198.51.100.23"}))


# --- the honeypot ----------------------------------------------------------------


def test_the_honeypot_is_hidden_by_a_css_class_and_filled_is_refused_quietly(
    client: FlaskClient, sessions: list[str], db: Session
) -> None:
    html = client.get("/donate").get_data(as_text=True)
    trap = re.search(r'<div class="guard-hp" aria-hidden="true">.*?</div>', html, re.S)
    assert trap and 'name="homepage"' in trap.group(0) and 'tabindex="-1"' in trap.group(0)
    assert ".guard-hp {" in client.get("/static/site.css").get_data(as_text=True)

    token = token_of(client)
    response = client.post("/donate", data=gift(token, 1, homepage="http://spam.example"))
    assert response.status_code == 200  # nothing that tells a script what it did
    page = response.get_data(as_text=True)
    assert "Please check your details" in page and "spam.example" not in page
    assert sessions == [] and count(db, Checkout) == 0
    assert client.post("/donate", data=gift(token, 2, homepage="")).status_code == 303


# --- minimum amounts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "amount", "smallest"),
    [("usd", "0.50", "$1.00"), ("eur", "0.99", "€1.00"), ("jpy", "99", "¥100")],
)
def test_below_the_currency_minimum_is_a_400_and_no_stripe_call(
    client: FlaskClient, sessions: list[str], currency: str, amount: str, smallest: str
) -> None:
    response = client.post(
        "/donate", data=gift(token_of(client), 1, currency=currency, amount=amount)
    )
    assert response.status_code == 400
    assert f"The smallest gift is {smallest}." in response.get_data(as_text=True)
    assert sessions == []


@pytest.mark.settings(
    CURRENCY_LIMITS={c: {"min": 500, "max": 1_000_000} for c in ("usd", "eur", "gbp", "jpy")}
)
def test_the_minimum_is_a_setting(client: FlaskClient, sessions: list[str]) -> None:
    token = token_of(client)
    assert client.post("/donate", data=gift(token, 1, amount="4.99")).status_code == 400
    assert client.post("/donate", data=gift(token, 2, amount="5")).status_code == 303
    assert len(sessions) == 1


# --- the 429 page ----------------------------------------------------------------


@pytest.mark.settings(DONOR_FORM_LIMIT_PER_ADDRESS="1 per hour", LANGUAGES=["en", "ru"])
def test_the_429_page_explains_says_when_to_come_back_and_links_to_the_form(
    client: FlaskClient, sessions: list[str]
) -> None:
    token = token_of(client)
    assert client.post("/donate", data=gift(token, 1)).status_code == 303
    limited = client.post("/donate", data=gift(token, 2))
    assert limited.status_code == 429
    retry = int(limited.headers["Retry-After"])
    assert 3500 < retry <= 3601
    page = limited.get_data(as_text=True)
    assert "Too many attempts" in page and "Nothing was charged." in page
    assert "Please wait 60 minutes, then try again." in page
    assert '<a href="/donate">' in page
    assert "1 per 1 hour" not in page  # the cap's wording is for us, not the donor
    assert "default-src 'self'" in limited.headers["Content-Security-Policy"]

    russian = client.post(
        "/donate", data=gift(token, 3), headers={"Accept-Language": "ru-RU,ru;q=0.9"}
    )
    assert russian.status_code == 429
    russian_page = russian.get_data(as_text=True)
    assert '<html lang="ru">' in russian_page
    assert "Слишком много попыток" in russian_page and "Деньги не списаны." in russian_page
    assert "Подождите 60 минут и попробуйте ещё раз." in russian_page
    assert client.get("/donate").status_code == 200  # the form itself stays open


# --- settings and other donor forms ------------------------------------------------


def test_a_cap_that_does_not_read_as_a_limit_stops_the_app_at_start(
    app_config: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match="donor_form_limit_per_email must read like"):
        create_app({**app_config, "DONOR_FORM_LIMIT_PER_EMAIL": "a few"})


def test_another_donor_form_gets_the_same_caps_by_its_endpoint_name(
    app_config: dict[str, Any],
) -> None:
    # How /manage's magic-link form is covered: its endpoint is listed in
    # donor_form_endpoints, or a view registered later calls limit_donor_form.
    app = create_app({**app_config, "DONOR_FORM_LIMIT_PER_EMAIL": "2 per hour"})
    try:

        def request_link() -> str:
            return "If we know that address, a link is on its way."

        app.add_url_rule("/magic", "magic.request_link", request_link, methods=["POST"])
        csrf.exempt(request_link)
        assert limit_donor_form(app, "magic.request_link")
        assert limit_donor_form(app, "magic.request_link")  # a second call changes nothing
        assert not limit_donor_form(app, "nowhere.form")
        client = app.test_client()
        statuses = [
            client.post(
                "/magic",
                data={"email": " Member@Example.org " if n % 2 else "member@example.org"},
                environ_base={"REMOTE_ADDR": f"203.0.113.{n}"},
            ).status_code
            for n in range(4)
        ]
        assert statuses == [200, 200, 429, 429]
    finally:
        app.extensions["donations.db"].dispose()


def test_addresses_in_one_ipv6_slash_64_share_the_address_cap(
    client: FlaskClient, sessions: list[str]
) -> None:
    statuses = burst(client, 100, lambda n: {"REMOTE_ADDR": f"2001:db8:5:7:{n:x}::1"})
    assert len(sessions) == 5 and statuses[429] == 95
    other = burst(client, 1, lambda n: {"REMOTE_ADDR": "2001:db8:5:8::1"})
    assert other == {303: 1}
