"""What each message to a donor says, read from the ledger and its records
when the job runs (not when it was queued: a donor or checkout may arrive in
a later event): a payment's receipt, a refund's corrected note, a failed
membership payment's notice, and the organisation that sends them.

Reads only; no Flask, no `stripe`. Raises NotReady when what a message needs
is not known yet (the job is retried), JobError when it never will be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from babel import Locale, UnknownLocaleError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.donate.models import Checkout
from app.donors import Donor, donor_for_customer
from app.ledger.models import JournalEntry
from app.ledger.records import (
    Membership,
    Refund,
    invoice_by_id,
    membership_by_subscription,
    payment_by_charge,
)
from app.outbox.runner import JobError, NotReady

# Refunds in these states gave the money back to us: no corrected note.
UNDONE_REFUNDS = ("failed", "canceled")
# How long a membership payment's receipt waits for its subscription's events
# (events come in any order) to say monthly or annual; then it goes without.
WAIT_FOR_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class Organisation:
    """The sender, from the settings (config/default.toml)."""

    name: str
    address: str
    tax_id: str
    tax_status: str
    contact_email: str
    base_url: str
    receipt_prefix: str
    default_locale: str
    languages: tuple[str, ...] = ("en",)
    # [localised.<lang>] of the settings: organisation_name and the like per language.
    localised: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    language_prefix: str = ""  # "/ru" once in_language("ru"): links to pages in it

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Organisation:
        return cls(
            name=str(settings.get("ORGANISATION_NAME") or ""),
            address=str(settings.get("ORGANISATION_ADDRESS") or ""),
            tax_id=str(settings.get("ORGANISATION_TAX_ID") or ""),
            tax_status=str(settings.get("ORGANISATION_TAX_STATUS") or ""),
            contact_email=str(settings.get("ORGANISATION_CONTACT_EMAIL") or ""),
            base_url=str(settings.get("PUBLIC_BASE_URL") or "").rstrip("/"),
            receipt_prefix=str(settings.get("RECEIPT_NUMBER_PREFIX") or "R-"),
            default_locale=str((settings.get("LANGUAGES") or ["en"])[0]),
            languages=tuple(settings.get("LANGUAGES") or ("en",)),
            localised=dict(settings.get("LOCALISED") or {}),
        )

    def in_language(self, locale: str) -> Organisation:
        """As a letter in `locale` names it: its per-language name and tax
        status, and links to the site's pages in that language (/ru/manage)."""
        language = locale.replace("-", "_").split("_")[0]
        values = self.localised.get(language) or {}
        default = self.default_locale.split("_")[0]
        return replace(
            self,
            name=str(values.get("organisation_name") or self.name),
            tax_status=str(values.get("organisation_tax_status") or self.tax_status),
            address=str(values.get("organisation_address") or self.address),
            language_prefix=f"/{language}"
            if language != default and language in self.languages
            else "",
        )

    @property
    def manage_url(self) -> str:
        return f"{self.base_url}{self.language_prefix}/manage"

    @property
    def mail_domain(self) -> str:
        return urlparse(self.base_url).hostname or "donations.invalid"


@dataclass(frozen=True)
class Recipient:
    donor_id: int
    email: str
    name: str | None
    locale: str


@dataclass(frozen=True)
class Receipt:
    number: str
    charge_id: str
    kind: str  # donation or membership_payment
    interval: str | None  # month or year for memberships, when known
    amount_minor: int
    currency: str
    paid_at: datetime
    dedication_kind: str | None
    dedication_name: str | None
    recipient: Recipient


@dataclass(frozen=True)
class RefundNote:
    receipt: Receipt
    refund_id: str
    amount_minor: int  # this refund
    refunded_minor: int  # every refund of the payment up to this one
    net_minor: int  # what remains of the gift
    refunded_at: datetime


@dataclass(frozen=True)
class FailedPayment:
    invoice_id: str
    amount_minor: int | None
    currency: str | None
    interval: str | None
    recipient: Recipient


def latest_checkout(session: Session, donor_id: int) -> Checkout | None:
    """The donor's most recent checkout: the language they last gave in."""
    return session.scalars(
        select(Checkout)
        .where(Checkout.donor_id == donor_id)
        .order_by(Checkout.created_at.desc(), Checkout.id.desc())
        .limit(1)
    ).first()


def donor_locale(checkout: Checkout | None, default: str) -> str:
    """The checkout's locale when it is one Babel knows, else the default."""
    if checkout is not None and checkout.locale:
        try:
            Locale.parse(checkout.locale.replace("-", "_"))
            return checkout.locale.replace("-", "_")
        except (UnknownLocaleError, ValueError):
            pass
    return default


def recipient_for(
    session: Session, donor_id: int | None, checkout: Checkout | None, org: Organisation, what: str
) -> Recipient:
    donor = session.get(Donor, donor_id) if donor_id is not None else None
    if donor is None:
        raise NotReady(f"the donor of {what} is not known yet")
    return Recipient(donor.id, donor.email, donor.name, donor_locale(checkout, org.default_locale))


def receipt_number(org: Organisation, entry_id: int) -> str:
    """Stable and unique: the number of the payment's journal entry, which is
    written once and never changes."""
    return f"{org.receipt_prefix}{entry_id:08d}"


def entry_by_key(session: Session, key: str) -> JournalEntry | None:
    return session.scalars(select(JournalEntry).where(JournalEntry.key == key)).first()


def receipt_for(
    session: Session,
    charge_id: str,
    org: Organisation,
    *,
    unknown: type[Exception] = JobError,
) -> Receipt:
    """The payment's receipt; `unknown` is raised when its charge is not
    recognised (JobError for a receipt, queued with the charge; NotReady for
    a refund's note, whose events can be applied before the charge's)."""
    entry = entry_by_key(session, f"charge:{charge_id}")
    if entry is None:
        raise unknown(f"no payment is recognised for {charge_id}")
    payment = payment_by_charge(session, charge_id)
    membership: Membership | None = None
    if payment is not None and payment.stripe_subscription_id:
        membership = membership_by_subscription(session, payment.stripe_subscription_id)
    donor_id = (payment.donor_id if payment else None) or entry.donor_id
    if donor_id is None and membership is not None:
        donor_id = membership.donor_id
    checkout_id = (payment.checkout_id if payment else None) or (
        membership.checkout_id if membership else None
    )
    checkout = session.get(Checkout, checkout_id) if checkout_id else None
    interval = None
    if entry.kind == "membership_payment":
        interval = membership.interval if membership and membership.interval else None
        if interval is None and checkout is not None and checkout.frequency != "once":
            interval = checkout.frequency
        if interval is None and utcnow() - entry.created_at < WAIT_FOR_INTERVAL:
            raise NotReady(f"the membership behind {charge_id} is not known yet")
    return Receipt(
        number=receipt_number(org, entry.id),
        charge_id=charge_id,
        kind=entry.kind,
        interval=interval,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        paid_at=entry.occurred_at,
        dedication_kind=checkout.dedication_kind if checkout else None,
        dedication_name=checkout.dedication_name if checkout else None,
        recipient=recipient_for(session, donor_id, checkout, org, charge_id),
    )


def refund_note_for(session: Session, refund_id: str, org: Organisation) -> RefundNote | None:
    """None when the refund was undone (failed or cancelled) before the note went."""
    entry = entry_by_key(session, f"refund:{refund_id}")
    if entry is None or entry.stripe_charge_id is None:
        raise JobError(f"no refund of a known charge is recognised for {refund_id}")
    statuses = {
        other_id: status
        for other_id, status in session.execute(
            select(Refund.stripe_refund_id, Refund.status).where(
                Refund.stripe_charge_id == entry.stripe_charge_id
            )
        )
    }
    if statuses.get(refund_id) in UNDONE_REFUNDS:
        return None
    # The refund's events may have been applied before its charge's (another
    # worker or lane holds those, or they wait for a retry): the note waits.
    receipt = receipt_for(session, entry.stripe_charge_id, org, unknown=NotReady)
    earlier = session.scalars(
        select(JournalEntry)
        .where(
            JournalEntry.kind == "refund", JournalEntry.stripe_charge_id == entry.stripe_charge_id
        )
        .order_by(JournalEntry.occurred_at, JournalEntry.id)
    ).all()
    refunded = 0
    for refund in earlier:
        if statuses.get(refund.stripe_object_id) not in UNDONE_REFUNDS:
            refunded += -refund.amount_minor
        if refund.id == entry.id:
            break
    return RefundNote(
        receipt=receipt,
        refund_id=refund_id,
        amount_minor=-entry.amount_minor,
        refunded_minor=refunded,
        net_minor=receipt.amount_minor - refunded,
        refunded_at=entry.occurred_at,
    )


def failed_payment_for(
    session: Session, invoice_id: str, org: Organisation
) -> FailedPayment | None:
    """None when the invoice was paid before the notice went."""
    invoice = invoice_by_id(session, invoice_id)
    if invoice is None:
        raise JobError(f"no invoice {invoice_id} is recorded")
    if invoice.status == "paid":
        return None
    membership = (
        membership_by_subscription(session, invoice.stripe_subscription_id)
        if invoice.stripe_subscription_id
        else None
    )
    donor_id = membership.donor_id if membership else None
    if donor_id is None and invoice.stripe_customer_id:
        donor = donor_for_customer(session, invoice.stripe_customer_id)
        donor_id = donor.id if donor else None
    checkout_id = membership.checkout_id if membership else None
    checkout = session.get(Checkout, checkout_id) if checkout_id else None
    return FailedPayment(
        invoice_id=invoice_id,
        amount_minor=membership.amount_minor if membership else None,
        currency=membership.currency if membership else None,
        interval=membership.interval if membership else None,
        recipient=recipient_for(session, donor_id, checkout, org, invoice_id),
    )
