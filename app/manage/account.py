"""What a signed-in donor sees on the manage page: their memberships, their
payments (giving history) and the changes they asked for lately. Reads only,
and only the donor's own rows. No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.donors import Donor
from app.ledger.records import Membership, Payment
from app.manage.models import MembershipAction

# Stripe's subscription statuses after which nothing can be changed.
ENDED_STATUSES = ("canceled", "incomplete_expired")
HISTORY_LIMIT = 200
RECENT_ACTIONS = 10


@dataclass(frozen=True)
class Account:
    donor: Donor
    memberships: list[Membership]
    payments: list[Payment]
    actions: list[MembershipAction]


def is_ended(membership: Membership) -> bool:
    return membership.status in ENDED_STATUSES


def load_account(session: Session, donor_id: int) -> Account | None:
    donor = session.get(Donor, donor_id)
    if donor is None:
        return None
    memberships = list(
        session.scalars(
            select(Membership)
            .where(Membership.donor_id == donor_id)
            .order_by(Membership.created_at.desc(), Membership.id.desc())
        )
    )
    payments = list(
        session.scalars(
            select(Payment)
            .where(Payment.donor_id == donor_id)
            .order_by(Payment.stripe_created_at.desc(), Payment.id.desc())
            .limit(HISTORY_LIMIT)
        )
    )
    actions = list(
        session.scalars(
            select(MembershipAction)
            .where(MembershipAction.donor_id == donor_id)
            .order_by(MembershipAction.id.desc())
            .limit(RECENT_ACTIONS)
        )
    )
    return Account(donor, memberships, payments, actions)


def membership_of(session: Session, donor_id: int, membership_id: int) -> Membership | None:
    """The membership when it is this donor's, else None (as if it did not exist)."""
    membership = session.get(Membership, membership_id)
    if membership is None or membership.donor_id != donor_id:
        return None
    return membership
