"""What every handler shares: the context of one event, and finding the donor
behind a payment (from our checkout, a known Stripe customer, the payload's
email, or as a last resort one customer look-up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.db import first_loaded
from app.donate.models import Checkout
from app.donors import Donor, attach_customer, donor_for_customer, find_or_create_donor
from app.payments import StripeLookup
from webhooks import mapping


@cache
def _checkout_donor() -> Any:
    return (
        select(Donor)
        .join(Checkout, Checkout.donor_id == Donor.id)
        .where(Checkout.id == bindparam("checkout_id"))
    )


@cache
def _checkout_donor_core() -> Any:
    donors, checkouts = Donor.__table__, Checkout.__table__
    return (
        select(*donors.columns)
        .select_from(donors.join(checkouts, checkouts.c.donor_id == donors.c.id))
        .where(checkouts.c.id == bindparam("checkout_id", type_=checkouts.c.id.type))
    )


@dataclass(frozen=True)
class Context:
    session: Session
    stripe: StripeLookup
    event: dict[str, Any]
    created: datetime

    @classmethod
    def of(cls, session: Session, event: dict[str, Any], stripe: StripeLookup) -> Context:
        return cls(session, stripe, event, mapping.event_created(event))

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def object(self) -> dict[str, Any]:
        return mapping.event_object(self.event)

    @property
    def previous_attributes(self) -> dict[str, Any] | None:
        previous: dict[str, Any] | None = self.event["data"].get("previous_attributes")
        return previous

    @property
    def livemode(self) -> bool:
        return bool(self.event.get("livemode"))


def checkout_donor(session: Session, checkout_id: str | None) -> Donor | None:
    """Our checkout's donor, in one statement (not the checkout, then its donor)."""
    if not checkout_id:
        return None
    found: Donor | None = first_loaded(
        session, Donor, _checkout_donor_core(), _checkout_donor(), {"checkout_id": checkout_id}
    )
    return found


def resolve_donor(
    ctx: Context,
    *,
    checkout_id: str | None,
    customer_id: str | None,
    email: str | None,
    name: str | None,
    allow_lookup: bool,
) -> Donor | None:
    """The donor behind a payment: our checkout's, else the known customer's,
    else found or created from the payload's email, else (when allowed) from
    the customer's email fetched from Stripe. The customer is attached
    (unless it is how the donor was found: attached already)."""
    session = ctx.session
    donor = checkout_donor(session, checkout_id)
    linked = False  # the customer is known to be this donor's already
    if donor is None and customer_id:
        donor = donor_for_customer(session, customer_id)
        linked = donor is not None
    if donor is None and email:
        donor = find_or_create_donor(session, email, name)
    if donor is None and customer_id and allow_lookup:
        customer = ctx.stripe.retrieve_customer(customer_id)
        if customer.get("email") and not customer.get("deleted"):
            donor = find_or_create_donor(session, str(customer["email"]), customer.get("name"))
    if donor is not None and customer_id and not linked:
        attach_customer(session, donor, customer_id, livemode=ctx.livemode)
    return donor
