"""Failed payments for the finance pages: charges whose payment record says
`failed` (a bank debit that failed after it had succeeded) and invoices whose
payment failed and that are not paid yet (a declined renewal; the record is
kept by the invoice handler, the only one that writes invoices). Newest first,
at most a page of each. Reads only: never writes; money comes from the
payment or the membership, never from an invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.donors import Donor
from app.finance.reports.periods import PAGE_SIZE
from app.ledger.records import Invoice, Membership, Payment

# Invoice statuses a failed payment leaves behind until it is paid.
UNPAID_INVOICE_STATUSES = ("open", "uncollectible", "void")


@dataclass(frozen=True)
class FailedPayment:
    what: str  # "charge" or "invoice"
    stripe_id: str
    status: str
    amount_minor: int | None
    currency: str | None
    donor_id: int | None
    donor_name: str | None
    donor_email: str | None
    subscription_id: str | None
    at: datetime


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def failed_payments(session: Session, limit: int = PAGE_SIZE) -> list[FailedPayment]:
    """The failed charges and the unpaid invoices whose payment failed,
    newest first (at most `limit` of each)."""
    found: list[FailedPayment] = []
    donor_id = func.coalesce(Payment.donor_id, Membership.donor_id)
    charges = (
        select(Payment, donor_id, Donor.name, Donor.email)
        .outerjoin(Membership, Membership.stripe_subscription_id == Payment.stripe_subscription_id)
        .outerjoin(Donor, Donor.id == donor_id)
        .where(Payment.status == "failed")
        .order_by(Payment.updated_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    for payment, donor, name, email in session.execute(charges):
        found.append(
            FailedPayment(
                "charge",
                payment.stripe_charge_id,
                payment.status,
                payment.amount_minor,
                payment.currency,
                donor,
                name,
                email,
                payment.stripe_subscription_id,
                _utc(payment.updated_at),
            )
        )
    invoices = (
        select(Invoice, Membership, Donor.name, Donor.email)
        .outerjoin(Membership, Membership.stripe_subscription_id == Invoice.stripe_subscription_id)
        .outerjoin(Donor, Donor.id == Membership.donor_id)
        .where(Invoice.status.in_(UNPAID_INVOICE_STATUSES))
        .order_by(Invoice.updated_at.desc(), Invoice.id.desc())
        .limit(limit)
    )
    for invoice, membership, name, email in session.execute(invoices):
        found.append(
            FailedPayment(
                "invoice",
                invoice.stripe_invoice_id,
                invoice.status or "",
                membership.amount_minor if membership else None,
                membership.currency if membership else None,
                membership.donor_id if membership else None,
                name,
                email,
                invoice.stripe_subscription_id,
                _utc(invoice.updated_at),
            )
        )
    return sorted(found, key=lambda f: f.at, reverse=True)
