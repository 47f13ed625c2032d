"""Donors are people, identified by normalised email; one donor may have
several Stripe customers. Find-or-create is safe under concurrency (insert
on conflict do nothing, then read). No Flask, no `stripe`, no commits."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import first_by, first_loaded, insert_missing, insert_missing_entity
from app.donors.models import Donor, StripeCustomer


def normalise_email(email: str) -> str:
    """Trimmed and lower-cased: how donors are told apart."""
    return email.strip().lower()


@cache
def _donor_by_email() -> Any:
    return select(Donor).where(Donor.email == bindparam("email"))


def find_or_create_donor(session: Session, email: str, name: str | None = None) -> Donor:
    """The donor with this email, created if new; a name fills in a missing one."""
    address = normalise_email(email)
    now = utcnow()
    values = {"email": address, "name": name or None, "created_at": now, "updated_at": now}
    donor: Donor | None = insert_missing_entity(session, Donor, values, index=["email"])
    if donor is not None:  # new: one statement
        return donor
    donor = first_by(session, Donor, "email", address)
    if donor is None:  # the insert found it, so this does not happen: the ORM's error if it does
        donor = session.scalars(_donor_by_email(), {"email": address}).one()
    if name and not donor.name:
        donor.name = name
    return donor


def attach_customer(
    session: Session, donor: Donor, stripe_customer_id: str, *, livemode: bool
) -> None:
    """Record that a Stripe customer belongs to a donor (first writer wins):
    one INSERT ... ON CONFLICT DO NOTHING (`donor_for_customer` reads it)."""
    insert_missing(
        session,
        StripeCustomer,
        {
            "stripe_customer_id": stripe_customer_id,
            "donor_id": donor.id,
            "livemode": livemode,
            "created_at": utcnow(),
        },
        index=["stripe_customer_id"],
    )


@cache
def _donor_for_customer() -> tuple[Any, Any]:
    """The customer's donor: a Core SELECT (PostgreSQL) and the ORM's."""
    donors, customers = Donor.__table__, StripeCustomer.__table__
    key = bindparam("customer_id", type_=customers.c.stripe_customer_id.type)
    core = (
        select(*donors.columns)
        .select_from(donors.join(customers, customers.c.donor_id == donors.c.id))
        .where(customers.c.stripe_customer_id == key)
    )
    orm = select(Donor).join(StripeCustomer).where(StripeCustomer.stripe_customer_id == key)
    return core, orm


def donor_for_customer(session: Session, stripe_customer_id: str) -> Donor | None:
    core, orm = _donor_for_customer()
    found: Donor | None = first_loaded(
        session, Donor, core, orm, {"customer_id": stripe_customer_id}
    )
    return found
