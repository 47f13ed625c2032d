"""Donors: people, identified by normalised email, and their Stripe customers
(models), found or created safely under concurrency (identity). Re-exports
both so `from app.donors import X` works. No Flask, no `stripe`, no commits.
"""

from app.donors.identity import (
    attach_customer,
    donor_for_customer,
    find_or_create_donor,
    normalise_email,
)
from app.donors.models import Donor, StripeCustomer

__all__ = [
    "Donor",
    "StripeCustomer",
    "attach_customer",
    "donor_for_customer",
    "find_or_create_donor",
    "normalise_email",
]
