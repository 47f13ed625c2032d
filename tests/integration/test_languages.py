"""Languages and the newsroom's own page, through the real app: a language
from the URL prefix (/ru/donate) or Accept-Language, the switcher, Russian
errors, Stripe Checkout's locale and return URLs (stubbed at HTTP), the
thanks page in the gift's language with its next steps, and the page's
name, appeal, colours and footer from the settings."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.donate.models import Checkout
from app.settings import ConfigError, load_settings
from tests.integration.test_donate import (
    BASE,
    SESSIONS_URL,
    checkout_session,
    form_data,
    hidden,
    sent_params,
)

RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}


def heading(html: str) -> str:
    match = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert match
    return match.group(1).strip()


def russian_form(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    html = client.get("/ru/donate").get_data(as_text=True)
    data = form_data(client, **fields)
    data.update(csrf_token=hidden(html, "csrf_token"), nonce=hidden(html, "nonce"))
    return data


# -- choosing the language ----------------------------------------------------------------


def test_the_ru_prefix_serves_the_form_in_russian_with_links_that_stay_in_it(
    client: FlaskClient,
) -> None:
    response = client.get("/ru/donate?currency=eur")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<html lang="ru">' in html
    assert heading(html) == "Поддержите нашу журналистику"
    assert 'action="/ru/donate"' in html
    assert "Пожертвовать один раз" in html  # the button, before an amount is chosen
    assert "Независимая журналистика жива" in html  # the default appeal, translated
    # The switcher: this page (and its query) in each language, the current one marked.
    assert '<a href="/en/donate?currency=eur" lang="en" hreflang="en">English</a>' in html
    assert (
        'href="/ru/donate?currency=eur" lang="ru" hreflang="ru" aria-current="true">Русский' in html
    )
    assert "10\xa0€" in html  # a preset, as Babel writes it in Russian


def test_without_a_prefix_accept_language_chooses_and_english_is_the_default(
    client: FlaskClient,
) -> None:
    assert heading(client.get("/donate").get_data(as_text=True)) == "Support our journalism"
    russian = client.get("/donate", headers=RUSSIAN).get_data(as_text=True)
    assert heading(russian) == "Поддержите нашу журналистику"
    assert 'action="/donate"' in russian  # unprefixed routes stay unprefixed
    german = client.get("/donate", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert heading(german) == "Support our journalism"  # not offered: the default
    # A prefix wins over the browser's wish, both ways.
    english = client.get("/en/donate", headers=RUSSIAN).get_data(as_text=True)
    assert heading(english) == "Support our journalism" and '<html lang="en">' in english


def test_the_bare_prefix_and_the_root_lead_to_the_form_in_that_language(
    client: FlaskClient,
) -> None:
    response = client.get("/ru/")
    assert response.status_code in (301, 302, 308)
    assert response.headers["Location"].endswith("/ru/donate")
    assert client.get("/xx/donate").status_code == 404  # not a language we offer


@pytest.mark.settings(LANGUAGES=["en"])
def test_one_language_shows_no_switcher_and_takes_no_prefix(client: FlaskClient) -> None:
    html = client.get("/donate", headers=RUSSIAN).get_data(as_text=True)
    assert heading(html) == "Support our journalism"
    assert 'class="languages"' not in html
    assert client.get("/ru/donate").status_code == 404


def test_errors_are_in_russian_on_a_russian_page(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    data = russian_form(client, amount="12abc", email="not an address", currency="eur")
    response = client.post("/ru/donate", data=data)

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Пожалуйста, исправьте отмеченные поля." in html
    assert "Введите сумму цифрами, например 25 или 1\xa0000,50." in html
    assert "Укажите правильный адрес электронной почты" in html
    assert len(stripe_http.calls) == 0
    assert db.scalars(select(Checkout)).first() is None


def test_an_amount_below_the_minimum_is_named_in_russian_format(client: FlaskClient) -> None:
    data = russian_form(client, amount="0,50", currency="eur")
    html = client.post("/ru/donate", data=data).get_data(as_text=True)
    assert "Минимальное пожертвование — 1,00\xa0€." in html


def test_a_page_that_is_not_found_is_in_the_language_of_its_prefix(client: FlaskClient) -> None:
    response = client.get("/ru/no-such-page")
    assert response.status_code == 404
    assert heading(response.get_data(as_text=True)) == "Мы не нашли эту страницу"


# -- Stripe Checkout ---------------------------------------------------------------------


def test_a_russian_gift_opens_checkout_in_russian_and_comes_back_to_russian_pages(
    client: FlaskClient, stripe_http: responses.RequestsMock, db: Session
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = russian_form(client, amount="1 000,50", currency="eur", frequency="month")
    response = client.post("/ru/donate", data=data)

    assert response.status_code == 303
    (call,) = stripe_http.calls
    params = sent_params(call)
    assert params["locale"] == "ru"
    assert params["success_url"] == f"{BASE}/ru/donate/thanks?session_id={{CHECKOUT_SESSION_ID}}"
    assert params["cancel_url"].startswith(f"{BASE}/ru/donate?")
    assert params["line_items[0][price_data][unit_amount]"] == "100050"
    assert params["line_items[0][price_data][product_data][name]"] == "Членство"
    checkout = db.scalars(select(Checkout)).one()
    assert checkout.locale == "ru"  # so the receipts follow it


def test_a_russian_one_time_gift_names_its_lines_in_russian_on_checkout(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = russian_form(client, amount="10", currency="eur", cover_fees="y")
    assert client.post("/ru/donate", data=data).status_code == 303
    params = sent_params(stripe_http.calls[0])
    assert params["line_items[0][price_data][product_data][name]"] == (
        "Пожертвование в пользу The Independent Newsroom"
    )
    assert params["line_items[1][price_data][product_data][name]"] == (
        "Комиссия за платёж, которую покрываете вы"
    )


def test_an_english_gift_keeps_unprefixed_return_urls_and_english_checkout(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    assert client.post("/donate", data=form_data(client)).status_code == 303
    params = sent_params(stripe_http.calls[0])
    assert params["locale"] == "en"
    assert params["success_url"] == f"{BASE}/donate/thanks?session_id={{CHECKOUT_SESSION_ID}}"


# -- the thanks page ---------------------------------------------------------------------


def make_russian_checkout(
    client: FlaskClient, stripe_http: responses.RequestsMock, **fields: Any
) -> str:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = russian_form(client, **fields)
    assert client.post("/ru/donate", data=data).status_code == 303
    return "cs_test_a1b2c3"


@pytest.mark.parametrize("path", ["/ru/donate/thanks", "/donate/thanks"])
def test_the_thanks_page_is_in_the_language_of_the_gift_with_next_steps(
    client: FlaskClient, stripe_http: responses.RequestsMock, path: str
) -> None:
    session_id = make_russian_checkout(client, stripe_http, amount="1 000,50", currency="eur")
    stripe_http.get(
        f"{SESSIONS_URL}/{session_id}",
        json=checkout_session(
            amount_total=100050, currency="eur", status="complete", payment_status="paid"
        ),
    )
    response = client.get(f"{path}?session_id={session_id}")  # no Accept-Language at all

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert heading(html) == "Спасибо!"
    assert re.search(r"Ваш платёж 1\xa0000,50\xa0€\s+прошёл\.", html)
    assert "Что дальше" in html
    mailto = re.search(r'href="(mailto:[^"]*)"', html)
    assert mailto and "/donate" in unquote(mailto.group(1))
    assert f"{BASE}/" in html  # the address to share


def test_the_thanks_page_links_to_manage_only_once_that_page_exists(
    client: FlaskClient, stripe_http: responses.RequestsMock
) -> None:
    session_id = make_russian_checkout(client, stripe_http, frequency="month")
    stripe_http.get(
        f"{SESSIONS_URL}/{session_id}",
        json=checkout_session(amount_total=2500, status="complete", payment_status="paid"),
    )
    html = client.get(f"/ru/donate/thanks?session_id={session_id}").get_data(as_text=True)
    has_manage = any(rule.rule == "/manage" for rule in client.application.url_map.iter_rules())
    assert ('href="/ru/manage"' in html) is has_manage


# -- the newsroom's own page --------------------------------------------------------------


@pytest.mark.settings(
    ORGANISATION_NAME="Springfield Shopper",
    APPEAL="Local news, paid for by its readers.",
    COLOUR_ACCENT="#7a1f5c",
    PRIVACY_URL="https://shopper.test/privacy",
    TERMS_URL="https://shopper.test/terms",
    ORGANISATION_CONTACT_EMAIL="desk@shopper.test",
    ORGANISATION_TAX_STATUS="A nonprofit newsroom.",
    LOCALISED={
        "ru": {
            "organisation_name": "Спрингфилдский вестник",
            "appeal": "Местные новости, оплаченные читателями.",
            "privacy_url": "https://shopper.test/ru/privacy",
        }
    },
)
def test_the_page_shows_the_newsrooms_name_words_colours_and_footer_per_language(
    client: FlaskClient,
) -> None:
    english = client.get("/donate").get_data(as_text=True)
    assert '<span class="org">Springfield Shopper</span>' in english
    assert '<p class="appeal">Local news, paid for by its readers.</p>' in english
    assert '<a href="https://shopper.test/privacy">Privacy</a>' in english
    assert '<a href="https://shopper.test/terms">Terms</a>' in english
    assert '<a href="mailto:desk@shopper.test">Contact</a>' in english
    assert "<li>A nonprofit newsroom.</li>" in english
    css_link = re.search(r'href="(/brand\.css\?v=\w+)"', english)
    assert css_link

    russian = client.get("/ru/donate").get_data(as_text=True)
    assert '<span class="org">Спрингфилдский вестник</span>' in russian
    assert "Местные новости, оплаченные читателями." in russian
    assert '<a href="https://shopper.test/ru/privacy">Конфиденциальность</a>' in russian
    assert '<a href="https://shopper.test/terms">Условия</a>' in russian  # not localised: the same

    css = client.get(css_link.group(1))
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "--accent: #7a1f5c;" in css.get_data(as_text=True)
    assert "public" in css.headers["Cache-Control"]


def test_no_page_setting_means_no_footer_and_the_name_in_text(client: FlaskClient) -> None:
    html = client.get("/donate").get_data(as_text=True)
    assert '<span class="org">The Independent Newsroom</span>' in html
    assert "<footer" not in html
    assert "style=" not in html and "<style" not in html


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"COLOUR_ACCENT": "red"}, "COLOUR_ACCENT must be a colour like #0b5cad"),
        ({"COLOUR_ACCENT": "#ffd500"}, "COLOUR_ACCENT #ffd500 against COLOUR_BACKGROUND"),
        ({"COLOUR_INK": "#bbbbbb"}, "COLOUR_INK #bbbbbb against COLOUR_BACKGROUND"),
        ({"COLOUR_ACCENT": "#67a0d9"}, "against COLOUR_BACKGROUND"),
        ({"LOGO": "brand/missing.svg"}, "LOGO: static/brand/missing.svg does not exist"),
        ({"LANGUAGES": []}, "LANGUAGES must list at least one language"),
        ({"LANGUAGES": ["en", "xx-nope"]}, "LANGUAGES: 'xx-nope' is not a language"),
        ({"LOCALISED": {"ru": "x"}}, "LOCALISED must be tables"),
        ({"LANGUAGES": ["en", "de"]}, "LANGUAGES: 'de' has no catalog translations/de/"),
    ],
)
def test_unreadable_colours_a_missing_logo_or_an_unknown_language_stop_the_start(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ={"APP_ENV": "test"}, overrides=overrides)
