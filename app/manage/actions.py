"""A donor's changes to a membership: each is recorded as a membership action
row first (keyed by the form's single-use token, so a double submit finds the
same row), then sent through the payments wrapper with an idempotency key
derived from that row. Cancel, resume and cancel again are three rows, three
keys, three requests; the same form sent twice is one.

Our membership state is not touched here: it changes only from the webhook
events that follow. No Flask, no `stripe`; never commits (the view does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db import insert_for
from app.ledger.records import Membership
from app.manage.account import is_ended
from app.manage.models import MembershipAction
from app.payments import MembershipChanges, PaymentsError

REASON_MAX_CHARS = 500
# A claim older than this is a request that died mid-send (Stripe calls time
# out well before): the action may be taken again, with the same key.
STALE_CLAIM = timedelta(minutes=2)


class ActionRefused(Exception):
    """The change cannot be made: `code` is ended (the membership is over),
    no_customer (no Stripe customer to update a card for), unchanged (the same
    amount and frequency as now) or form_used (this form's token was used for
    another change)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ActionRequest:
    """What the donor asked: `params` is {} for cancel, resume and
    update_card, and {amount_minor, currency, interval} for change."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def _same(
    action: MembershipAction, donor_id: int, membership: Membership, asked: ActionRequest
) -> bool:
    return (
        action.donor_id == donor_id
        and action.membership_id == membership.id
        and action.kind == asked.kind
        and json.loads(action.params) == asked.params
    )


def check_allowed(membership: Membership, asked: ActionRequest) -> None:
    if is_ended(membership):
        raise ActionRefused("ended")
    if asked.kind == "update_card" and not membership.stripe_customer_id:
        raise ActionRefused("no_customer")
    if asked.kind == "change" and (
        asked.params.get("amount_minor") == membership.amount_minor
        and asked.params.get("interval") == membership.interval
    ):
        raise ActionRefused("unchanged")


def record_action(
    session: Session,
    *,
    donor_id: int,
    membership: Membership,
    asked: ActionRequest,
    form_token: str,
    now: datetime,
) -> MembershipAction:
    """The action row of this form: found again when the form comes twice
    (the first answer stands), else checked and inserted (pending)."""
    existing = session.scalars(
        select(MembershipAction).where(MembershipAction.form_token == form_token)
    ).first()
    if existing is None:
        check_allowed(membership, asked)
        reason = (asked.reason or "").strip()[:REASON_MAX_CHARS] or None
        session.execute(
            insert_for(session)(MembershipAction)
            .values(
                donor_id=donor_id,
                membership_id=membership.id,
                stripe_subscription_id=membership.stripe_subscription_id,
                kind=asked.kind,
                params=json.dumps(asked.params, sort_keys=True),
                reason=reason,
                form_token=form_token,
                status="pending",
                attempts=0,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["form_token"])
        )
        existing = session.scalars(
            select(MembershipAction).where(MembershipAction.form_token == form_token)
        ).one()
    if not _same(existing, donor_id, membership, asked):
        raise ActionRefused("form_used")
    return existing


def stripe_request(
    action: MembershipAction,
    membership: Membership,
    payments: MembershipChanges,
    *,
    settings: Mapping[str, Any],
    return_url: str,
    locale: str,
) -> dict[str, Any]:
    """The Stripe parameters of an action. A change first reads the
    subscription for its item (and product, unless `membership_product` is
    set): items keep their id when their price changes."""
    asked = json.loads(action.params)
    if action.kind == "cancel":
        return {"cancel_at_period_end": True}
    if action.kind == "resume":
        return {"cancel_at_period_end": False}
    if action.kind == "update_card":
        return {
            "customer": membership.stripe_customer_id,
            "return_url": return_url,
            "flow_data": {"type": "payment_method_update"},
            "locale": locale.split("_")[0],
        }
    subscription = payments.retrieve_subscription(membership.stripe_subscription_id)
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        raise PaymentsError("invalid", "the subscription has no items")
    item = items[0]
    product = str(settings.get("MEMBERSHIP_PRODUCT") or "") or (item.get("price") or {}).get(
        "product"
    )
    if isinstance(product, dict):
        product = product.get("id")
    if not product:
        raise PaymentsError("invalid", "the subscription's price names no product")
    interval = str(asked["interval"])
    current = ((item.get("price") or {}).get("recurring") or {}).get("interval")
    return {
        "items": [
            {
                "id": item["id"],
                "price_data": {
                    "currency": asked["currency"],
                    "product": product,
                    "unit_amount": int(asked["amount_minor"]),
                    "recurring": {"interval": interval},
                },
            }
        ],
        # A new amount starts at the next payment; a switch of frequency
        # starts the new period now, less what is left of the current one
        # (Stripe bills a change of interval at once).
        "proration_behavior": "none" if interval == current else "create_prorations",
        "metadata": {"frequency": interval},
    }


def claim_action(session: Session, action: MembershipAction, now: datetime) -> bool:
    """Take the action to send it (status sending): False when it was sent
    already or another request holds it, so two submits at the same moment
    make one request. The caller commits the claim before calling Stripe."""
    result = session.execute(
        update(MembershipAction)
        .where(
            MembershipAction.id == action.id,
            or_(
                MembershipAction.status.in_(("pending", "failed")),
                (MembershipAction.status == "sending")
                & (MembershipAction.claimed_at < now - STALE_CLAIM),
            ),
        )
        .values(status="sending", claimed_at=now, attempts=MembershipAction.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    session.refresh(action)
    return getattr(result, "rowcount", 0) == 1


def send_action(
    session: Session,
    payments: MembershipChanges,
    action: MembershipAction,
    membership: Membership,
    *,
    settings: Mapping[str, Any],
    return_url: str,
    locale: str,
    now: datetime,
) -> MembershipAction:
    """Send a claimed action to Stripe with the row's idempotency key, so a
    retry after a timeout is the same change at Stripe, and record the
    outcome. Raises PaymentsError after recording the failure on the row
    (the caller commits it)."""
    try:
        if action.stripe_params is None:
            params = stripe_request(
                action,
                membership,
                payments,
                settings=settings,
                return_url=return_url,
                locale=locale,
            )
            action.stripe_params = json.dumps(params, sort_keys=True)
        params = json.loads(action.stripe_params)
        if action.kind == "update_card":
            portal = payments.create_billing_portal_session(
                params, idempotency_key=action.idempotency_key
            )
            action.result_url = str(portal["url"])
        else:
            payments.update_subscription(
                action.stripe_subscription_id, params, idempotency_key=action.idempotency_key
            )
    except PaymentsError as exc:
        action.status = "failed"
        action.stripe_error = exc.kind
        session.flush()
        raise
    action.status = "sent"
    action.stripe_error = None
    action.sent_at = now
    session.flush()
    return action
