"""Manage my membership, end to end through the real app: magic links mailed
by the real worker (as .eml files), opened once; each change recorded as an
action row and sent to Stripe (stubbed at HTTP with `responses`) once per
form, however often it is submitted; membership state changing only from the
signed webhooks that follow."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import frozen_at, utcnow
from app.db import Database
from app.donors import find_or_create_donor
from app.ledger.records import Membership
from app.manage.models import ManageLink, MembershipAction
from app.outbox.models import OutboxJob
from tests import event_factory as ef
from tests.conftest import WEBHOOK_SECRET
from tests.stripe_helpers import post_event
from webhooks.worker import Jobs, RetryPolicy, drain

API = "https://api.stripe.com/v1"
BASE = "http://donate.test"
POLICY = RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=3600)
LINK = re.compile(r"https?://[^/\s]+/manage/([A-Za-z0-9_-]{43})")
PERIOD_END = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def app_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {
        **app_config,
        "PUBLIC_BASE_URL": BASE,
        "MAIL_FOLDER": str(tmp_path / "mail"),
        "MAIL_FROM": "members@newsroom.test",
    }


def work(app: Flask) -> list[Any]:
    """What `donations worker --once` does: every due event and job."""
    database: Database = app.extensions["donations.db"]
    payments = app.extensions["donations.payments"]
    return drain(database, payments, POLICY, jobs=Jobs.from_settings(app.config, payments))


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def mails(app: Flask) -> list[email.message.EmailMessage]:
    folder = Path(app.config["MAIL_FOLDER"])
    found = []
    for path in sorted(folder.glob("manage_link-*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


def text_of(message: email.message.EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def add_member(
    db: Session, address: str = "member@example.org", *, tag: str = "m1", **fields: Any
) -> Membership:
    donor = find_or_create_donor(db, address, "Mia Member")
    membership = Membership(
        stripe_subscription_id=f"sub_{tag}",
        stripe_customer_id=f"cus_{tag}",
        donor_id=donor.id,
        status=fields.pop("status", "active"),
        amount_minor=fields.pop("amount_minor", 1000),
        currency="usd",
        interval=fields.pop("interval", "month"),
        current_period_end=PERIOD_END,
        cancel_at_period_end=fields.pop("cancel_at_period_end", False),
        livemode=False,
        **fields,
    )
    db.add(membership)
    db.commit()
    return membership


def ask_for_link(client: FlaskClient, address: str) -> Any:
    page = client.get("/manage")
    assert page.status_code == 200
    return client.post(
        "/manage", data={"csrf_token": csrf(page.get_data(as_text=True)), "email": address}
    )


def mailed_token(app: Flask, client: FlaskClient, address: str) -> str:
    assert ask_for_link(client, address).status_code == 200
    work(app)
    found = LINK.search(text_of(mails(app)[-1]))
    assert found, "no link in the message"
    return found.group(1)


def open_link(client: FlaskClient, token: str) -> Any:
    page = client.get(f"/manage/{token}")
    if page.status_code != 200:
        return page
    return client.post(f"/manage/{token}", data={"csrf_token": csrf(page.get_data(as_text=True))})


def sign_in(app: Flask, client: FlaskClient, address: str = "member@example.org") -> str:
    response = open_link(client, mailed_token(app, client, address))
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/manage/account"
    page = client.get("/manage/account")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def form_fields(html: str, membership_id: int, kind: str) -> dict[str, str]:
    """The hidden fields of one action form on the account page."""
    action = f"/manage/memberships/{membership_id}/{kind}"
    start = html.index(f'action="{action}"')
    form = html[start : html.index("</form>", start)]
    return dict(re.findall(r'name="(csrf_token|action_token)" value="([^"]*)"', form))


def stripe_posts(mock: responses.RequestsMock, path: str) -> list[Any]:
    return [
        call
        for call in mock.calls
        if call.request.method == "POST" and urlsplit(call.request.url).path == f"/v1{path}"
    ]


def body_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


def subscription_json(membership: Membership, **fields: Any) -> dict[str, Any]:
    return ef.subscription(
        membership.stripe_subscription_id,
        customer=membership.stripe_customer_id or "",
        created=ef.T0,
        status="active",
        amount=fields.pop("amount", membership.amount_minor or 0),
        interval=fields.pop("interval", membership.interval or "month"),
        period_end=int(PERIOD_END.timestamp()),
        **fields,
    )


def actions(db: Session) -> list[MembershipAction]:
    db.rollback()  # end any read still open (on SQLite it sees an old snapshot)
    found = list(
        db.scalars(
            select(MembershipAction)
            .order_by(MembershipAction.id)
            .execution_options(populate_existing=True)
        )
    )
    db.commit()
    return found


# -- magic links ---------------------------------------------------------------------------


def test_an_unknown_email_gets_the_same_page_as_a_known_one_and_no_mail(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    add_member(db)

    known = ask_for_link(client, "Member@Example.org ")
    unknown = ask_for_link(client, "stranger@example.org")

    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    assert "Check your email" in known.get_data(as_text=True)
    # The same work for both: a row and a queued job each.
    assert db.scalar(select(func.count()).select_from(ManageLink)) == 2
    db.commit()
    outcomes = work(app)
    assert sorted(o.status for o in outcomes) == ["processed", "processed"]
    sent = mails(app)
    assert len(sent) == 1
    assert sent[0]["To"].addresses[0].addr_spec == "member@example.org"
    assert sent[0]["Subject"] == "Your link to manage your giving to The Independent Newsroom"
    notes = {job.key: job.note for job in db.scalars(select(OutboxJob))}
    assert "no donor has that address: nothing sent" in notes.values()
    stranger = db.scalars(select(ManageLink).where(ManageLink.donor_id.is_(None))).one()
    assert stranger.token_hash is None  # no link exists for a stranger's address


def test_a_bad_email_is_a_400_with_the_message_at_the_field(
    client: FlaskClient, db: Session
) -> None:
    page = client.get("/manage").get_data(as_text=True)
    response = client.post("/manage", data={"csrf_token": csrf(page), "email": "not-an-email"})
    assert response.status_code == 400
    assert "Enter a valid email address" in response.get_data(as_text=True)
    missing = client.post("/manage", data={"email": "member@example.org"})
    assert missing.status_code == 400  # no CSRF token
    assert db.scalar(select(func.count()).select_from(ManageLink)) == 0


def test_a_link_opens_the_page_once_and_its_page_alone_does_not_use_it(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    add_member(db)
    token = mailed_token(app, client, "member@example.org")
    message = mails(app)[-1]
    assert "30 minutes" in text_of(message)
    assert f"{BASE}/manage" in text_of(message)

    # A mail scanner fetching the link twice uses nothing up.
    assert client.get(f"/manage/{token}").status_code == 200
    assert client.get(f"/manage/{token}").status_code == 200
    first = open_link(client, token)
    assert first.status_code == 303
    page = client.get("/manage/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "member@example.org" in html and "$10.00" in html
    assert page.headers["Cache-Control"] == "no-store"

    again_page = client.get(f"/manage/{token}")
    assert again_page.status_code == 410
    assert "used already" in again_page.get_data(as_text=True)
    other = app.test_client()
    assert other.post(f"/manage/{token}", data={"csrf_token": "x"}).status_code == 400
    assert open_link(other, token).status_code == 410
    assert other.get("/manage/account").status_code == 303  # no session in that browser


def test_an_altered_or_made_up_link_is_refused(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    add_member(db)
    token = mailed_token(app, client, "member@example.org")
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (altered, "x" * 43, "short", token + "x"):
        response = client.get(f"/manage/{bad}")
        assert response.status_code == 404, bad
        assert "does not work" in response.get_data(as_text=True)
    assert open_link(client, token).status_code == 303  # the real one still works


def test_a_link_expires_after_30_minutes(app: Flask, client: FlaskClient, db: Session) -> None:
    add_member(db)
    start = utcnow()
    with frozen_at(start):
        token = mailed_token(app, client, "member@example.org")
    with frozen_at(start + timedelta(minutes=29)):
        assert client.get(f"/manage/{token}").status_code == 200
    with frozen_at(start + timedelta(minutes=31)):
        response = open_link(client, token)
        assert response.status_code == 410
        assert "expired" in response.get_data(as_text=True)
        assert client.get("/manage/account").status_code == 303


def test_the_donor_session_ends_after_its_time(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    add_member(db)
    start = utcnow()
    with frozen_at(start):
        sign_in(app, client)
    with frozen_at(start + timedelta(minutes=31)):
        response = client.get("/manage/account")
        assert response.status_code == 303
        assert urlsplit(response.headers["Location"]).path == "/manage"


def test_no_address_or_link_is_written_to_the_log(
    app: Flask, client: FlaskClient, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    add_member(db)
    caplog.set_level(logging.DEBUG)
    token = mailed_token(app, client, "member@example.org")
    open_link(client, token)
    assert token not in caplog.text
    assert "member@example.org" not in caplog.text


# -- actions ---------------------------------------------------------------------------------


def test_cancel_sends_one_request_however_often_the_form_is_sent(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    path = f"{API}/subscriptions/{membership.stripe_subscription_id}"
    stripe_http.post(path, json=subscription_json(membership, cancel_at_period_end=True))
    data = {**form_fields(html, membership.id, "cancel"), "reason": "Money is tight this year"}

    first = client.post(f"/manage/memberships/{membership.id}/cancel", data=data)
    second = client.post(f"/manage/memberships/{membership.id}/cancel", data=data)

    assert first.status_code == second.status_code == 303
    calls = stripe_posts(stripe_http, f"/subscriptions/{membership.stripe_subscription_id}")
    assert len(calls) == 1
    assert body_of(calls[0]) == {"cancel_at_period_end": ["true"]}
    (action,) = actions(db)
    assert calls[0].request.headers["Idempotency-Key"] == f"membership_action:{action.id}"
    assert (action.kind, action.status, action.reason) == (
        "cancel",
        "sent",
        "Money is tight this year",
    )
    # Our state waits for Stripe's event.
    db.expire_all()
    assert db.get(Membership, membership.id).cancel_at_period_end is False  # type: ignore[union-attr]


def test_cancel_resume_cancel_are_three_requests_with_three_keys(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    sub = membership.stripe_subscription_id
    stripe_http.post(f"{API}/subscriptions/{sub}", json=subscription_json(membership))
    cancelled = ef.cancellation_at_period_end(
        ef.Scenario(
            facts={"subscription": sub, "customer": membership.stripe_customer_id, "amount": 1000}
        ),
        at=int(utcnow().timestamp()) - 100,
    )

    for step, kind in enumerate(["cancel", "resume", "cancel"]):
        if kind == "resume":  # the page offers resume once Stripe said it is cancelling
            event = cancelled.events[0]
            assert post_event(client, event, WEBHOOK_SECRET).status_code == 200
            work(app)
        elif step == 2:
            event = {**cancelled.events[0], "id": "evt_resumed"}
            event["data"] = {
                "object": {**event["data"]["object"], "cancel_at_period_end": False},
                "previous_attributes": {"cancel_at_period_end": True},
            }
            event["created"] += 1
            assert post_event(client, event, WEBHOOK_SECRET).status_code == 200
            work(app)
        html = client.get("/manage/account").get_data(as_text=True)
        response = client.post(
            f"/manage/memberships/{membership.id}/{kind}",
            data=form_fields(html, membership.id, kind),
        )
        assert response.status_code == 303, response.get_data(as_text=True)

    calls = stripe_posts(stripe_http, f"/subscriptions/{sub}")
    assert [body_of(c)["cancel_at_period_end"] for c in calls] == [["true"], ["false"], ["true"]]
    keys = [c.request.headers["Idempotency-Key"] for c in calls]
    assert len(set(keys)) == 3
    assert [a.kind for a in actions(db)] == ["cancel", "resume", "cancel"]


def test_a_new_amount_is_one_update_with_an_inline_price_from_the_next_payment(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    sub = membership.stripe_subscription_id
    stripe_http.get(f"{API}/subscriptions/{sub}", json=subscription_json(membership))
    stripe_http.post(f"{API}/subscriptions/{sub}", json=subscription_json(membership, amount=2500))
    data = {**form_fields(html, membership.id, "change"), "amount": "25", "interval": "month"}

    for _ in range(2):
        response = client.post(f"/manage/memberships/{membership.id}/change", data=data)
        assert response.status_code == 303

    calls = stripe_posts(stripe_http, f"/subscriptions/{sub}")
    assert len(calls) == 1
    assert len([c for c in stripe_http.calls if c.request.method == "GET"]) == 1
    assert body_of(calls[0]) == {
        "items[0][id]": [f"si_{sub}"],
        "items[0][price_data][currency]": ["usd"],
        "items[0][price_data][product]": ["prod_membership"],
        "items[0][price_data][unit_amount]": ["2500"],
        "items[0][price_data][recurring][interval]": ["month"],
        "proration_behavior": ["none"],
        "metadata[frequency]": ["month"],
    }
    (action,) = actions(db)
    assert action.kind == "change" and action.status == "sent"


def test_switching_to_annual_prorates_and_bills_the_new_period(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    sub = membership.stripe_subscription_id
    stripe_http.get(f"{API}/subscriptions/{sub}", json=subscription_json(membership))
    stripe_http.post(f"{API}/subscriptions/{sub}", json=subscription_json(membership))
    data = {**form_fields(html, membership.id, "change"), "amount": "100", "interval": "year"}

    assert client.post(f"/manage/memberships/{membership.id}/change", data=data).status_code == 303

    (call,) = stripe_posts(stripe_http, f"/subscriptions/{sub}")
    body = body_of(call)
    assert body["items[0][price_data][recurring][interval]"] == ["year"]
    assert body["items[0][price_data][unit_amount]"] == ["10000"]
    assert body["proration_behavior"] == ["create_prorations"]


def test_a_bad_amount_is_a_400_at_the_field_and_changes_nothing(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    fields = form_fields(html, membership.id, "change")
    for amount, message in [
        ("lots", "Enter an amount in digits"),
        ("0.50", "The smallest amount is $1.00"),
        ("20000", "The largest amount online is $10,000.00"),
    ]:
        response = client.post(
            f"/manage/memberships/{membership.id}/change",
            data={**fields, "amount": amount, "interval": "month"},
        )
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    same = client.post(
        f"/manage/memberships/{membership.id}/change",
        data={**fields, "amount": "10", "interval": "month"},
    )
    assert same.status_code == 409
    assert "already the amount" in same.get_data(as_text=True)
    no_token = client.post(
        f"/manage/memberships/{membership.id}/cancel",
        data={"csrf_token": fields["csrf_token"]},
    )
    assert no_token.status_code == 400
    assert actions(db) == []
    assert len(stripe_http.calls) == 0


def test_update_card_opens_one_billing_portal_session(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    portal_url = "https://billing.stripe.com/p/session/test_abc"
    stripe_http.post(
        f"{API}/billing_portal/sessions",
        json={"id": "bps_1", "object": "billing_portal.session", "url": portal_url},
    )
    data = form_fields(html, membership.id, "update-card")

    responses_ = [
        client.post(f"/manage/memberships/{membership.id}/update-card", data=data) for _ in range(2)
    ]

    assert [r.status_code for r in responses_] == [303, 303]
    assert {r.headers["Location"] for r in responses_} == {portal_url}
    (call,) = stripe_posts(stripe_http, "/billing_portal/sessions")
    assert body_of(call) == {
        "customer": [membership.stripe_customer_id],
        "return_url": [f"{BASE}/manage/account"],
        "flow_data[type]": ["payment_method_update"],
        "locale": ["en"],
    }
    (action,) = actions(db)
    assert call.request.headers["Idempotency-Key"] == f"membership_action:{action.id}"


def test_a_stripe_outage_keeps_the_action_for_a_retry_with_the_same_key(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    path = f"{API}/subscriptions/{membership.stripe_subscription_id}"
    stripe_http.post(path, json={"error": {"message": "down"}}, status=500)
    data = form_fields(html, membership.id, "cancel")

    failed = client.post(f"/manage/memberships/{membership.id}/cancel", data=data)

    assert failed.status_code == 503
    assert "nothing was changed yet" in failed.get_data(as_text=True)
    (action,) = actions(db)
    assert (action.status, action.stripe_error) == ("failed", "unavailable")
    stripe_http.replace(responses.POST, path, json=subscription_json(membership))
    retry = client.post(f"/manage/actions/{action.id}/retry", data={"csrf_token": csrf(html)})
    assert retry.status_code == 303
    calls = stripe_posts(stripe_http, f"/subscriptions/{membership.stripe_subscription_id}")
    assert len(calls) == 2
    assert {c.request.headers["Idempotency-Key"] for c in calls} == {
        f"membership_action:{action.id}"
    }
    assert actions(db)[0].status == "sent"


def test_another_donors_membership_or_an_ended_one_cannot_be_changed(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    mine = add_member(db)
    theirs = add_member(db, "other@example.org", tag="m2")
    ended = add_member(db, tag="m3", status="canceled")
    html = sign_in(app, client)
    fields = form_fields(html, mine.id, "cancel")

    assert client.post(f"/manage/memberships/{theirs.id}/cancel", data=fields).status_code == 404
    refused = client.post(f"/manage/memberships/{ended.id}/cancel", data=fields)
    assert refused.status_code == 409
    assert "has ended" in refused.get_data(as_text=True)
    assert client.post(f"/manage/memberships/{mine.id}/delete", data=fields).status_code == 404
    assert actions(db) == []
    assert len(stripe_http.calls) == 0


# -- end to end --------------------------------------------------------------------------------


def test_a_member_cancels_and_changes_and_the_webhooks_bring_the_new_state(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    scenario = ef.membership("mgd", amount=1000, email="mgd@example.org", renewals=0)
    scenario.stub(stripe_http)
    now = int(utcnow().timestamp())
    for event in scenario.events:
        assert post_event(client, event, WEBHOOK_SECRET, timestamp=now).status_code == 200
    work(app)

    html = sign_in(app, client, "mgd@example.org")
    membership = db.scalars(select(Membership)).one()
    db.commit()
    sub = scenario.facts["subscription"]
    assert "Cancel at the end of the period" in html

    cancel = ef.cancellation_at_period_end(scenario, at=now + 10)
    stripe_http.post(f"{API}/subscriptions/{sub}", json=cancel.events[0]["data"]["object"])
    data = form_fields(html, membership.id, "cancel")
    assert client.post(f"/manage/memberships/{membership.id}/cancel", data=data).status_code == 303
    assert "Resume my membership" not in client.get("/manage/account").get_data(as_text=True)

    for event in cancel.events:
        assert post_event(client, event, WEBHOOK_SECRET).status_code == 200
    work(app)
    db.expire_all()
    assert db.get(Membership, membership.id).cancel_at_period_end is True  # type: ignore[union-attr]
    db.commit()
    html = client.get("/manage/account").get_data(as_text=True)
    assert "Resume my membership" in html and "ends on" in html

    changed = ef.subscription(
        sub,
        customer=scenario.facts["customer"],
        created=ef.T0,
        status="active",
        amount=2500,
        period_end=cancel.facts["period_end"],
        cancel_at_period_end=True,
    )
    stripe_http.get(f"{API}/subscriptions/{sub}", json=cancel.events[0]["data"]["object"])
    data = {**form_fields(html, membership.id, "change"), "amount": "25", "interval": "month"}
    assert client.post(f"/manage/memberships/{membership.id}/change", data=data).status_code == 303
    event = ef.Scenario()
    event.add(
        "customer.subscription.updated",
        changed,
        now + 20,
        previous_attributes={"items": {}},
    )
    updated = {**event.events[0], "id": "evt_mgd_amount_changed"}
    assert post_event(client, updated, WEBHOOK_SECRET).status_code == 200
    work(app)
    db.expire_all()
    membership_now = db.get(Membership, membership.id)
    assert membership_now is not None and membership_now.amount_minor == 2500
    db.commit()
    assert "$25.00" in client.get("/manage/account").get_data(as_text=True)
    assert [(a.kind, a.status) for a in actions(db)] == [("cancel", "sent"), ("change", "sent")]
    assert len(stripe_posts(stripe_http, f"/subscriptions/{sub}")) == 2


def test_a_russian_reader_gets_the_page_and_the_link_in_russian(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    add_member(db)
    headers = {"Accept-Language": "ru"}
    page = client.get("/manage", headers=headers)
    assert "Прислать мне ссылку" in page.get_data(as_text=True)
    response = client.post(
        "/manage",
        data={"csrf_token": csrf(page.get_data(as_text=True)), "email": "member@example.org"},
        headers=headers,
    )
    assert "Проверьте почту" in response.get_data(as_text=True)
    work(app)
    (message,) = mails(app)
    assert message["Content-Language"] == "ru"
    assert "Ссылка работает один раз, в течение 30 минут" in text_of(message)
    token = LINK.search(text_of(message))
    assert token is not None
    client.post(
        f"/manage/{token.group(1)}",
        data={"csrf_token": csrf(client.get(f"/manage/{token.group(1)}").get_data(as_text=True))},
    )
    account = client.get("/manage/account", headers=headers).get_data(as_text=True)
    assert "Отменить в конце периода" in account and "История пожертвований" in account


def test_a_submit_while_another_request_sends_the_same_form_sends_nothing(
    app: Flask, client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    membership = add_member(db)
    html = sign_in(app, client)
    path = f"{API}/subscriptions/{membership.stripe_subscription_id}"
    stripe_http.post(path, json=subscription_json(membership))
    data = form_fields(html, membership.id, "cancel")
    start = utcnow()
    with frozen_at(start):
        stripe_http.replace(responses.POST, path, body=ConnectionError("timed out"))
        assert client.post(f"/manage/memberships/{membership.id}/cancel", data=data).status_code
    (action,) = actions(db)
    # As if a request had taken the row and not finished yet.
    action.status, action.claimed_at = "sending", start
    db.commit()
    stripe_http.replace(responses.POST, path, json=subscription_json(membership))

    with frozen_at(start + timedelta(seconds=30)):
        busy = client.post(f"/manage/memberships/{membership.id}/cancel", data=data)
        assert busy.status_code == 303
        assert "being sent" in client.get("/manage/account").get_data(as_text=True)
    assert (
        len(stripe_posts(stripe_http, f"/subscriptions/{membership.stripe_subscription_id}")) == 1
    )

    with frozen_at(start + timedelta(minutes=3)):  # that request died: taken again
        again = client.post(f"/manage/memberships/{membership.id}/cancel", data=data)
        assert again.status_code == 303
    calls = stripe_posts(stripe_http, f"/subscriptions/{membership.stripe_subscription_id}")
    assert len(calls) == 2
    assert {c.request.headers["Idempotency-Key"] for c in calls} == {
        f"membership_action:{action.id}"
    }
    assert actions(db)[0].status == "sent"


# -- the guard on the magic-link form ---------------------------------------------------


def link_rows(db: Session) -> int:
    db.rollback()
    found = db.scalar(select(func.count()).select_from(ManageLink)) or 0
    db.commit()
    return found


def test_a_filled_honeypot_gets_the_usual_answer_and_nothing_is_written(
    client: FlaskClient, db: Session
) -> None:
    add_member(db)
    page = client.get("/manage").get_data(as_text=True)
    assert 'name="homepage"' in page
    response = client.post(
        "/manage",
        data={"csrf_token": csrf(page), "email": "member@example.org", "homepage": "http://x"},
    )
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    assert link_rows(db) == 0


@pytest.mark.settings(DONOR_FORM_LIMIT_PER_EMAIL="2 per hour", DONOR_FORM_LIMIT_PER_ADDRESS="")
def test_the_magic_link_form_is_held_to_the_donor_form_caps(
    client: FlaskClient, db: Session
) -> None:
    add_member(db)
    token = csrf(client.get("/manage").get_data(as_text=True))
    statuses = [
        client.post(
            "/manage",
            data={"csrf_token": token, "email": "member@example.org"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{n}"},
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    assert link_rows(db) == 2


@pytest.mark.settings(
    TURNSTILE_SITE_KEY="1x00000000000000000000AA",
    TURNSTILE_SECRET_KEY="1x0000000000000000000000000000000AA",
    CAPTCHA_AFTER_PER_ADDRESS="1 per hour",
    CAPTCHA_AFTER_SITE="",
)
def test_past_the_captcha_threshold_no_link_is_made_without_a_valid_token(
    client: FlaskClient, db: Session, stripe_http: responses.RequestsMock
) -> None:
    stripe_http.post(
        "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        json={"success": False, "error-codes": ["invalid-input-response"]},
    )
    token = csrf(client.get("/manage").get_data(as_text=True))
    data = {"csrf_token": token, "email": "member@example.org"}
    assert client.post("/manage", data=data).status_code == 200
    refused = client.post("/manage", data={**data, "cf-turnstile-response": "forged"})
    assert refused.status_code == 400
    assert "not a robot" in refused.get_data(as_text=True)
    assert 'class="cf-turnstile"' in refused.get_data(as_text=True)
    assert link_rows(db) == 1
