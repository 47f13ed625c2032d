"""What every handler shares: the context of one event, and finding the donor
behind a payment (from our checkout, a known Stripe customer, the payload's
email, or as a last resort one customer look-up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, false, func, select
from sqlalchemy.orm import Session

from app.db import dialect_of, execute_prepared, load_entity
from app.donate.models import Checkout
from app.donors import Donor, StripeCustomer, attach_customer, find_or_create_donor
from app.payments import StripeLookup
from webhooks import mapping


@cache
def _known_donor() -> tuple[Any, Any]:
    """Our checkout's donor, else the customer's, and whether the customer is
    on record (to anyone: attaching it again would change nothing): a Core
    SELECT (PostgreSQL) and the ORM's, each one statement."""
    donors, checkouts = Donor.__table__, Checkout.__table__
    customers = StripeCustomer.__table__
    by_checkout = (
        select(checkouts.c.donor_id)
        .where(checkouts.c.id == bindparam("checkout_id", type_=checkouts.c.id.type))
        .scalar_subquery()
    )
    key = bindparam("customer_id", type_=customers.c.stripe_customer_id.type)
    by_customer = (
        select(customers.c.donor_id).where(customers.c.stripe_customer_id == key).scalar_subquery()
    )
    donor_id = func.coalesce(by_checkout, by_customer)
    attached = func.coalesce(by_customer.is_not(None), false()).label("customer_attached")
    core = select(*donors.columns, attached).where(donors.c.id == donor_id)
    orm = select(Donor, attached).where(Donor.id == donor_id)
    return core, orm


def known_donor(
    session: Session, checkout_id: str | None, customer_id: str | None
) -> tuple[Donor | None, bool]:
    """The donor our checkout names, else the one the Stripe customer is
    attached to (None: neither), and whether that customer is attached
    already; one statement, where the checkout's donor and then the
    customer's were two and the customer's attaching a third."""
    if not checkout_id and not customer_id:
        return None, False
    core, orm = _known_donor()
    params = {"checkout_id": checkout_id, "customer_id": customer_id}
    if dialect_of(session) != "postgresql":
        found = session.execute(orm, params).first()
        return (found[0], bool(found[1])) if found is not None else (None, False)
    session.flush()
    row = execute_prepared(session, core, params).mappings().first()
    if row is None:
        return None, False
    values = dict(row)
    attached = bool(values.pop("customer_attached"))
    donor: Donor = load_entity(session, Donor, values)
    return donor, attached


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
    unless it is on record already (first writer wins: attaching it again
    would change nothing)."""
    session = ctx.session
    donor, attached = known_donor(session, checkout_id, customer_id)
    if donor is None and email:
        donor = find_or_create_donor(session, email, name)
    if donor is None and customer_id and allow_lookup:
        customer = ctx.stripe.retrieve_customer(customer_id)
        if customer.get("email") and not customer.get("deleted"):
            donor = find_or_create_donor(session, str(customer["email"]), customer.get("name"))
    if donor is not None and customer_id and not attached:
        attach_customer(session, donor, customer_id, livemode=ctx.livemode)
    return donor
