"""One staff layout for every page under /ledger (finance pages, staff
admin, audit, password, two-factor, and the error pages of signed-in staff),
and filters that answer a bad value with a 400 and the message next to the
form, never a silently empty list."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.integration.test_finance import login

NAV = re.compile(r'<nav class="staff-nav"[^>]*>(.*?)</nav>', re.S)
LAYOUT_PAGES = (
    "/ledger/",
    "/ledger/journal",
    "/ledger/events",
    "/ledger/staff",
    "/ledger/audit",
    "/ledger/account/password",
    "/ledger/account/two-factor",
    "/ledger/appeals/",
    "/ledger/appeals/links",
    "/ledger/appeals/support/edit",
)


def nav_of(page: str) -> str:
    found = NAV.findall(page)
    assert len(found) == 1, page[:2000]
    return str(found[0])


@pytest.fixture
def admin(app: Flask, db: Session) -> FlaskClient:
    return login(app, db, "admin")


@pytest.fixture
def viewer(app: Flask, db: Session) -> FlaskClient:
    return login(app, db, "viewer")


def test_every_staff_page_has_the_same_navigation_who_is_signed_in_and_logout(
    admin: FlaskClient,
) -> None:
    navs = set()
    for path in LAYOUT_PAGES:
        response = admin.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        nav = re.sub(r'\s*aria-current="page"', "", nav_of(page))
        nav = re.sub(r'name="csrf_token" value="[^"]*"', "", nav)
        navs.add(re.sub(r"\s+", "", nav))
        assert "admin@newsroom.test" in nav, path
        assert "Log out" in nav and "/logout" in nav, path
        for link in ("Journal", "Donors", "Staff", "Audit log", "Two-factor", "Password"):
            assert f">{link}<" in nav, (path, link)
        assert "<style" not in page and "style=" not in page, path
    assert len(navs) == 1


def test_the_navigation_follows_the_role(viewer: FlaskClient) -> None:
    nav = nav_of(viewer.get("/ledger/account/password").get_data(as_text=True))
    assert ">Journal<" in nav and ">Two-factor<" in nav
    assert ">Staff<" not in nav and ">Audit log<" not in nav


@pytest.mark.parametrize(
    ("path", "status"),
    [("/ledger/nowhere", 404), ("/ledger/donors/999999", 404), ("/ledger/staff", 403)],
)
def test_errors_under_ledger_render_inside_the_staff_layout_when_signed_in(
    viewer: FlaskClient, path: str, status: int
) -> None:
    response = viewer.get(path)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert "viewer@newsroom.test" in nav_of(page)


def test_errors_elsewhere_and_for_strangers_use_the_public_error_page(
    client: FlaskClient, viewer: FlaskClient
) -> None:
    for who in (client, viewer):
        response = who.get("/nowhere")
        assert response.status_code == 404
        page = response.get_data(as_text=True)
        assert 'class="staff-nav"' not in page
        assert "/donate" in page


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/ledger/journal?kind=gift", "'gift' is not a kind of movement"),
        ("/ledger/journal?currency=zz", "'zz' is not a currency"),
        ("/ledger/journal?since=2026-02-30", "'2026-02-30' is not a date"),
        ("/ledger/memberships?status=sleeping", "'sleeping' is not a membership status"),
        ("/ledger/memberships?currency=dollars", "'dollars' is not a currency"),
        ("/ledger/events?status=lost", "'lost' is not an event status"),
        ("/ledger/campaigns?since=soon", "'soon' is not a date"),
    ],
)
def test_a_bad_filter_is_a_400_with_the_message_next_to_the_filter_form(
    admin: FlaskClient, path: str, message: str
) -> None:
    response = admin.get(path)
    assert response.status_code == 400, path
    page = response.get_data(as_text=True)
    form_and_message = re.search(
        r'<form method="get"[^>]*class="filters"[^>]*>.*?</form>\s*<p class="error-box"[^>]*>(.*?)</p>',
        page,
        re.S,
    )
    assert form_and_message, page
    assert message in form_and_message.group(1).replace("&#39;", "'")
