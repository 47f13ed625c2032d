"""Manage my membership without a Stripe key: the offline sandbox applies
cancel, resume and a new amount as Stripe would, and delivers the signed
`customer.subscription.updated` over real HTTP to our own receiver; a card
update leads to the sandbox's stand-in for the billing portal."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.ledger.records import Membership
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_manage import form_fields, sign_in, work
from tests.integration.test_sandbox import (  # noqa: F401  (fixtures)
    GOOD_CARD,
    _LateApp,
    capture,
    donate,
    live,
    pay,
    served,
)


@pytest.fixture
def app_config(db_url: str, live: tuple[str, _LateApp], tmp_path: Path) -> dict[str, Any]:  # noqa: F811
    base, _late = live
    return {
        "APP_ENV": "test",
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": None,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PUBLIC_BASE_URL": base,
        "SANDBOX_WEBHOOK_URL": "",  # our own receiver, over HTTP
        "MAIL_FOLDER": str(tmp_path / "mail"),
    }


def membership_now(db: Session) -> Membership:
    db.rollback()
    found = db.scalars(select(Membership).execution_options(populate_existing=True)).one()
    db.commit()
    return found


def test_a_sandbox_member_cancels_resumes_changes_and_updates_their_card(
    served: Flask,  # noqa: F811
    client: FlaskClient,
    db: Session,
) -> None:
    app = served
    base = app.config["PUBLIC_BASE_URL"]
    assert pay(client, donate(client, frequency="month", amount="10"), GOOD_CARD).status_code == 303
    work(app)
    membership = membership_now(db)
    assert (membership.amount_minor, membership.cancel_at_period_end) == (1000, False)

    html = sign_in(app, client, "reader@example.org")

    cancel = client.post(
        f"/manage/memberships/{membership.id}/cancel",
        data=form_fields(html, membership.id, "cancel"),
    )
    assert cancel.status_code == 303
    work(app)
    assert membership_now(db).cancel_at_period_end is True

    html = client.get("/manage/account").get_data(as_text=True)
    resume = client.post(
        f"/manage/memberships/{membership.id}/resume",
        data=form_fields(html, membership.id, "resume"),
    )
    assert resume.status_code == 303
    work(app)
    assert membership_now(db).cancel_at_period_end is False

    html = client.get("/manage/account").get_data(as_text=True)
    change = client.post(
        f"/manage/memberships/{membership.id}/change",
        data={**form_fields(html, membership.id, "change"), "amount": "25", "interval": "month"},
    )
    assert change.status_code == 303
    work(app)
    assert membership_now(db).amount_minor == 2500

    card = client.post(
        f"/manage/memberships/{membership.id}/update-card",
        data=form_fields(html, membership.id, "update-card"),
    )
    assert card.status_code == 303
    portal = urlsplit(card.headers["Location"])
    assert portal.path.startswith("/sandbox/billing_portal/bps_test_")
    page = client.get(portal.path)
    assert page.status_code == 200
    assert f"{base}/manage/account" in page.get_data(as_text=True)
