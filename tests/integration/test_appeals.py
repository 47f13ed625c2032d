"""Reader appeals over HTTP: the embed (framing only by the configured
origins, no cookies, the same cacheable answer for every view, attribution
on every link, Russian text), the impression beacon (counts, not rows, and
nothing about a reader), clicks, the nudge to monthly without JavaScript,
the member invitation, the admins' editor, the link builder and the funnel.

Stripe is stubbed at HTTP; the database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import re
import time
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import create_app
from app.appeals.counters import count_event
from app.appeals.models import AppealCounter, AppealOverride
from app.clock import utcnow
from app.donate.models import Checkout
from app.settings import ConfigError
from tests.integration.test_donate import SESSIONS_URL, checkout_session, form_data, hidden
from tests.integration.test_finance import login

NEWSROOM = "https://news.example.org"
ARTICLE = "https://news.example.org/2026/12/01/the-story/?utm_source=social#comments"
EMBED = "/embed/appeals/support"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {"EMBED_ALLOWED_ORIGINS": [NEWSROOM, "http://127.0.0.1:8123"], **app_config}


def links(html: str) -> list[str]:
    return [
        m.replace("&amp;", "&") for m in re.findall(r'<a target="_top"[^>]* href="([^"]+)"', html)
    ]


def counters(db: Session) -> list[tuple[str, str, str, int]]:
    db.rollback()
    return [
        (c.appeal, c.variant, c.event, c.count)
        for c in db.scalars(select(AppealCounter).order_by(AppealCounter.id))
    ]


# -- the embed ------------------------------------------------------------------------


def test_the_embed_is_framable_only_by_the_configured_origins_and_nothing_else_is(
    client: FlaskClient,
) -> None:
    embed = client.get(f"{EMBED}?article={ARTICLE}")
    assert embed.status_code == 200
    policy = embed.headers["Content-Security-Policy"]
    assert f"frame-ancestors {NEWSROOM} http://127.0.0.1:8123" in policy
    assert "X-Frame-Options" not in embed.headers
    for path in ("/donate", "/login", "/embed/appeals.js"):
        other = client.get(path)
        assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"], path
        assert other.headers["X-Frame-Options"] == "DENY", path


@pytest.mark.settings(EMBED_ALLOWED_ORIGINS=[])
def test_with_no_origin_configured_nobody_may_frame_the_embed(client: FlaskClient) -> None:
    embed = client.get(EMBED)
    assert "frame-ancestors 'none'" in embed.headers["Content-Security-Policy"]


def test_the_embed_sets_no_cookie_is_the_same_for_every_view_and_cacheable(
    client: FlaskClient, app: Flask, db: Session
) -> None:
    first = client.get(f"{EMBED}?article={ARTICLE}")
    # Another reader, with a stale staff cookie and another language preference.
    other = app.test_client()
    other.set_cookie("session", "stale-or-forged")
    second = other.get(
        f"{EMBED}?article={ARTICLE}",
        headers={"Accept-Language": "ru", "X-Forwarded-For": "203.0.113.9"},
    )
    assert first.data == second.data
    assert first.headers["ETag"] == second.headers["ETag"]
    for response in (first, second):
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
        assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "csrf_token" not in first.get_data(as_text=True)
    again = client.get(
        f"{EMBED}?article={ARTICLE}", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert counters(db) == []  # showing the embed counts nothing; the beacon does


def test_the_embed_makes_no_third_party_request_and_weighs_under_10_kb(client: FlaskClient) -> None:
    html = client.get(f"{EMBED}?article={ARTICLE}").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert sorted(assets) == ["/static/appeal-embed.css", "/static/appeal-frame.js"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # nothing from elsewhere
    weight = len(html.encode()) + sum(len(client.get(a).data) for a in assets)
    assert weight < 10_000, weight


def test_every_link_opens_the_prefilled_form_at_the_top_level_with_the_attribution(
    client: FlaskClient,
) -> None:
    html = client.get(f"{EMBED}?article={ARTICLE}").get_data(as_text=True)
    found = links(html)
    assert found and len(found) == html.count("<a ")  # every link targets _top
    variants = set()
    for link in found:
        parts = urlsplit(link)
        assert parts.path == "/donate"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert query["campaign"] == "support"
        assert query["utm_medium"] == "appeal"
        assert query["utm_content"] == "news.example.org/2026/12/01/the-story"
        variants.add(query["utm_term"])
    assert variants == {"a", "b"}  # every variant is in the one cached page
    assert 'data-variant="b" hidden' in html  # the first is the no-script fallback
    assert any("amount=10.00&currency=usd&frequency=month" in x for x in found)


def test_the_russian_article_gets_the_russian_text(client: FlaskClient) -> None:
    html = client.get(f"{EMBED}?article=ru-123&lang=ru").get_data(as_text=True)
    assert 'lang="ru"' in html
    assert "Независимая журналистика жива." in html
    assert "Independent journalism" not in html
    assert "/ru/donate?" in html and 'href="/donate?' not in html  # to the Russian form
    english = client.get(f"{EMBED}?article=en-123").get_data(as_text=True)
    assert "Independent journalism isn&#39;t dead." in english


def test_the_banner_is_one_line_of_the_same_appeal(client: FlaskClient) -> None:
    html = client.get(f"{EMBED}?layout=banner&article=home").get_data(as_text=True)
    assert html.count('<p class="banner">') == 2  # one per variant
    assert "Support us! Independent journalism" in html
    assert "utm_content=home" in html


def test_an_unknown_appeal_is_a_404_and_markdown_cannot_carry_script(
    client: FlaskClient, db: Session
) -> None:
    assert client.get("/embed/appeals/nothing-here").status_code == 404
    db.add(
        AppealOverride(
            slug="evil",
            source='[[variants]]\nkey = "a"\n[variants.texts.en]\nheadline = "H"\n'
            'body = "<script>alert(1)</script> [x](javascript:alert(1)) **bold**"\n',
        )
    )
    db.commit()
    html = client.get("/embed/appeals/evil").get_data(as_text=True)
    assert "<script>alert" not in html and 'href="javascript' not in html
    assert "<strong>bold</strong>" in html


@pytest.mark.parametrize("origins", [["news.example.org"], ["https://news.example.org/path"]])
def test_an_embed_origin_that_is_not_an_origin_stops_the_start(
    app_config: dict[str, Any], origins: list[str]
) -> None:
    with pytest.raises(ConfigError, match="EMBED_ALLOWED_ORIGINS"):
        create_app({**app_config, "EMBED_ALLOWED_ORIGINS": origins})


# -- measurement ----------------------------------------------------------------------


def test_a_burst_of_10000_impressions_is_counts_not_rows_and_nothing_about_readers(
    client: FlaskClient, db: Session
) -> None:
    # The same upsert on both backends; on the shared PostgreSQL of the suite
    # each request waits on a few round trips, so that run is a fifth as long.
    burst = 10_000 if db.get_bind().dialect.name == "sqlite" else 2_000
    started = time.perf_counter()
    for n in range(burst):
        response = client.post(
            f"{EMBED}/seen?v={'ab'[n % 2]}",
            headers={"X-Forwarded-For": f"198.51.100.{n % 250}", "User-Agent": f"reader-{n}"},
        )
        assert response.status_code == 204
        assert "Set-Cookie" not in response.headers
    elapsed = time.perf_counter() - started
    rows = counters(db)
    assert rows == [("support", "a", "seen", burst // 2), ("support", "b", "seen", burst // 2)]
    assert db.scalar(select(func.count()).select_from(AppealCounter)) == 2
    assert {c.name for c in AppealCounter.__table__.columns} == {
        "id",
        "appeal",
        "variant",
        "day",
        "event",
        "count",
    }
    print(f"{burst} beacons in {elapsed:.1f} s ({burst / elapsed:.0f}/s)")


def test_the_beacon_counts_nothing_for_an_unknown_appeal_or_variant(
    client: FlaskClient, db: Session
) -> None:
    assert client.post(f"{EMBED}/seen?v=zz").status_code == 204
    assert client.get("/embed/appeals/made-up/seen?v=a").status_code == 204
    assert client.get(f"{EMBED}/seen?v=a").status_code == 204  # <noscript> image
    assert counters(db) == [("support", "a", "seen", 1)]


def test_arriving_on_the_form_from_an_appeal_counts_a_click(
    client: FlaskClient, db: Session
) -> None:
    link = links(client.get(f"{EMBED}?article=story-1").get_data(as_text=True))[0]
    page = client.get(link).get_data(as_text=True)
    assert hidden(page, "campaign") == "support"
    assert hidden(page, "utm_content") == "story-1"
    client.get("/donate?campaign=support&utm_medium=email")  # not from an appeal
    client.get("/donate?campaign=support&utm_medium=appeal&utm_term=zz")  # no such variant
    assert ("support", "a", "click", 1) in counters(db)
    assert [c for c in counters(db) if c[2] == "click"] == [("support", "a", "click", 1)]


# -- the nudge to monthly -------------------------------------------------------------


def test_the_nudge_offers_the_monthly_equivalent_and_switches_without_javascript(
    client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    query = "?amount=30&currency=usd&frequency=once&campaign=support&utm_medium=appeal&utm_term=a&utm_content=story-1"
    page = client.get(f"/donate{query}").get_data(as_text=True)
    assert "$30 once, or $10 every month?" in page
    assert 'formaction="/donate/monthly"' in page
    data = form_data(client, query, amount="30", email="nudged@example.org", name="Nell Nudge")
    switched = client.post("/donate/monthly", data=data)
    assert switched.status_code == 200
    html = switched.get_data(as_text=True)
    assert re.search(r'name="frequency" value="month" checked', html)
    assert re.search(r'name="preset" value="10.00" checked', html)
    assert 'value="nudged@example.org"' in html  # what was typed is kept
    assert hidden(html, "nudge") == "switch"
    assert 'id="nudge" data-divisor="3" hidden' in html  # monthly now: no offer
    # The donor gives: the checkout is monthly, 10.00, from the appeal, by the nudge.
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    fields = {
        name: hidden(html, name)
        for name in (
            "csrf_token",
            "nonce",
            "campaign",
            "utm_medium",
            "utm_content",
            "utm_term",
            "nudge",
        )
    }
    given = client.post(
        "/donate",
        data={
            **fields,
            "frequency": "month",
            "currency": "usd",
            "preset": "10.00",
            "email": "nudged@example.org",
            "name": "Nell Nudge",
        },
    )
    assert given.status_code == 303
    db.rollback()
    checkout = db.scalars(select(Checkout)).one()
    assert (checkout.frequency, checkout.amount_minor, checkout.nudge) == ("month", 1000, "switch")
    assert (checkout.campaign, checkout.utm_term, checkout.utm_content) == (
        "support",
        "a",
        "story-1",
    )
    events = {(c[0], c[2]): c[3] for c in counters(db)}
    assert events[("support", "nudge_shown")] == 2  # the two pages that offered it
    assert events[("support", "nudge_switch")] == 1


@pytest.mark.settings(APPEALS_NUDGE=False)
def test_the_nudge_can_be_turned_off(client: FlaskClient) -> None:
    page = client.get("/donate?amount=30&currency=usd&frequency=once").get_data(as_text=True)
    assert "every month?" not in page and "/donate/monthly" not in page


def test_after_a_one_time_gift_the_thanks_page_invites_to_become_a_member(
    client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(SESSIONS_URL, json=checkout_session())
    data = form_data(client, "?campaign=support&utm_medium=appeal&utm_term=b", amount="60")
    assert client.post("/donate", data=data).status_code == 303
    stripe_http.get(
        f"{SESSIONS_URL}/cs_test_a1b2c3",
        json=checkout_session(
            amount_total=6000, currency="usd", status="complete", payment_status="paid"
        ),
    )
    html = client.get("/donate/thanks?session_id=cs_test_a1b2c3").get_data(as_text=True)
    assert "Become a member with $20 a month" in html
    invite = re.search(r'class="button" href="([^"]+)"', html)
    assert invite
    query = parse_qs(urlsplit(invite.group(1).replace("&amp;", "&")).query)
    assert query["frequency"] == ["month"] and query["amount"] == ["20.00"]
    assert query["nudge"] == ["invite"] and query["campaign"] == ["support"]
    page = client.get(invite.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert hidden(page, "nudge") == "invite"
    assert re.search(r'name="preset" value="20.00" checked', page)
    events = {(c[0], c[2]): c[3] for c in counters(db)}
    assert events[("support", "invite_shown")] == 1
    assert events[("support", "invite_click")] == 1
    russian = client.get("/ru/donate/thanks?session_id=cs_test_a1b2c3").get_data(as_text=True)
    invite = re.search(r'class="button" href="([^"]+)"', russian)
    assert invite and invite.group(1).startswith("/ru/donate?")  # stays in the gift's language


# -- the finance area -----------------------------------------------------------------


def test_an_admin_edits_an_appeal_and_the_embed_shows_it(app: Flask, db: Session) -> None:
    admin = login(app, db, "admin")
    page = admin.get("/ledger/appeals/support/edit").get_data(as_text=True)
    token = hidden(page, "csrf_token")
    source = re.search(r'<textarea id="source"[^>]*>(.*?)</textarea>', page, re.S)
    assert source and "Independent journalism" in source.group(1).replace("&#39;", "'")
    bad = admin.post(
        "/ledger/appeals/support/edit",
        data={"csrf_token": token, "slug": "support", "source": 'default_frequency = "weekly"\n'},
    )
    assert bad.status_code == 400
    assert "default_frequency must be once, month or year" in bad.get_data(as_text=True)
    new = (
        'default_frequency = "year"\n[amounts.usd]\nyear = [12_000]\n'
        '[[variants]]\nkey = "c"\n[variants.texts.en]\nheadline = "Edited by the newsroom"\n'
        'body = "Now with *Markdown*."\n'
    )
    saved = admin.post(
        "/ledger/appeals/support/edit", data={"csrf_token": token, "slug": "support", "source": new}
    )
    assert saved.status_code == 303
    html = app.test_client().get(EMBED).get_data(as_text=True)
    assert "Edited by the newsroom" in html and "<em>Markdown</em>" in html
    assert "utm_term=c" in html and "amount=120.00&amp;currency=usd&amp;frequency=year" in html
    listing = admin.get("/ledger/appeals/").get_data(as_text=True)
    assert "admin&#39;s version" in listing
    reverted = admin.post("/ledger/appeals/support/revert", data={"csrf_token": token})
    assert reverted.status_code == 303
    assert "Edited by the newsroom" not in app.test_client().get(EMBED).get_data(as_text=True)


def test_a_viewer_sees_appeals_and_builds_links_but_cannot_edit(app: Flask, db: Session) -> None:
    viewer = login(app, db, "viewer")
    listing = viewer.get("/ledger/appeals/")
    assert listing.status_code == 200
    text = listing.get_data(as_text=True)
    assert "/embed/appeals.js" in text and "data-appeal=&#34;support&#34;" in text
    assert viewer.get("/ledger/appeals/support/edit").status_code == 403
    built = viewer.get(
        "/ledger/appeals/links?campaign=spring&source=newsletter&medium=email&content=dec-issue"
        "&currency=eur&frequency=month&amount=10.00"
    )
    assert built.status_code == 200
    url = re.search(r'id="tracked-url">([^<]+)<', built.get_data(as_text=True))
    assert url
    assert url.group(1).replace("&amp;", "&") == (
        "http://donate.test/donate?amount=10.00&currency=eur&frequency=month&campaign=spring"
        "&utm_source=newsletter&utm_medium=email&utm_content=dec-issue"
    )
    assert viewer.get("/ledger/appeals/links?campaign=&source=x").status_code == 400


def test_the_campaigns_page_shows_each_variants_funnel_with_an_interval(
    app: Flask, db: Session
) -> None:
    today = utcnow().date()
    count_event(db, "support", "a", "seen", today, 1000)
    count_event(db, "support", "b", "seen", today, 1000)
    count_event(db, "support", "a", "click", today, 40)
    count_event(db, "support", "a", "seen", date(2020, 1, 1), 5)  # outside the range asked
    db.commit()
    finance = login(app, db, "finance")
    html = finance.get(f"/ledger/campaigns?since={today.isoformat()}").get_data(as_text=True)
    row = re.search(r'<tr data-appeal="support" data-variant="a">(.*?)</tr>', html, re.S)
    assert row
    assert '<td class="num" data-field="seen">1000</td>' in row.group(1)
    assert '<td class="num" data-field="clicks">40</td>' in row.group(1)
    assert "0.00 % (0.00 % to 0.39 %)" in row.group(1)  # no gift yet: Wilson's upper bound
    assert 'id="nudge-funnel"' in html


@pytest.mark.settings(CURRENCIES=["eur"])
def test_a_site_offering_fewer_currencies_still_starts_and_shows_its_own(
    client: FlaskClient,
) -> None:
    html = client.get(f"{EMBED}?article=x").get_data(as_text=True)
    assert "currency=eur" in html and "currency=usd" not in html
