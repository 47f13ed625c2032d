"""The receipts' outbox jobs: `queue_*` (called in the transaction of the
ledger change that causes them, once per key however often the cause
repeats) and the runners that build and send each message when the worker
runs the job (RUNNERS, by kind).

Keys: `receipt:ch_...`, `refund_note:re_...`, `payment_failed:in_...`,
`statement:YEAR:DONOR_ID`. Payloads hold ids only. No Flask, no `stripe`;
never commits (app.outbox.runner does).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.outbox.mail import send_message
from app.outbox.queue import enqueue, job_status
from app.outbox.runner import JobContext, JobError, NotReady, Runner
from app.receipts.letters import (
    Organisation,
    Recipient,
    donor_locale,
    failed_payment_for,
    latest_checkout,
    receipt_for,
    refund_note_for,
)
from app.receipts.messages import build_message, local_date
from app.receipts.pdf import statement_pdf
from app.receipts.statements import statement_for

DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


# A payment (or refund) that happened longer than this before the event that
# told us is history, recovered by `donations stripe sync` (whose events are
# dated when it runs): no receipt is mailed for it years later.
NEWS_FOR = timedelta(days=7)


def is_news(happened_at: datetime, told_at: datetime) -> bool:
    """Whether a donor should still hear of something that happened at
    `happened_at`, learnt from an event of `told_at`."""
    return told_at - happened_at <= NEWS_FOR


def queue_receipt(session: Session, *, charge_id: str) -> bool:
    """A receipt for a payment the ledger has just recognised."""
    return enqueue(session, f"receipt:{charge_id}", "receipt", {"charge_id": charge_id})


def queue_refund_note(session: Session, *, refund_id: str) -> bool:
    """A corrected note for a refund the ledger has just recognised."""
    return enqueue(session, f"refund_note:{refund_id}", "refund_note", {"refund_id": refund_id})


def queue_payment_failed(session: Session, *, invoice_id: str) -> bool:
    """A notice that a membership's invoice payment failed, once per invoice."""
    return enqueue(
        session, f"payment_failed:{invoice_id}", "payment_failed", {"invoice_id": invoice_id}
    )


def queue_statement(session: Session, *, year: int, donor_id: int) -> bool:
    return enqueue(
        session,
        f"statement:{year}:{donor_id}",
        "statement",
        {"year": year, "donor_id": donor_id},
    )


def reporting_zone(settings: Mapping[str, Any]) -> ZoneInfo:
    return ZoneInfo(str(settings.get("LEDGER_REPORTING_TZ") or "UTC"))


def run_receipt(session: Session, payload: Mapping[str, Any], ctx: JobContext) -> str | None:
    org = Organisation.from_settings(ctx.settings)
    charge_id = str(payload["charge_id"])
    receipt = receipt_for(session, charge_id, org)
    key = f"receipt:{charge_id}"
    message = build_message(
        "receipt",
        receipt.recipient,
        org,
        key=key,
        receipt=receipt,
        paid_on=_date(receipt.paid_at, ctx, receipt.recipient),
    )
    send_message(ctx.mail, message, name=key)
    return None


def run_refund_note(session: Session, payload: Mapping[str, Any], ctx: JobContext) -> str | None:
    org = Organisation.from_settings(ctx.settings)
    refund_id = str(payload["refund_id"])
    note = refund_note_for(session, refund_id, org)
    if note is None:
        return "the refund was undone"
    # The correction follows the receipt it corrects.
    if job_status(session, f"receipt:{note.receipt.charge_id}") in ("pending", "failed"):
        raise NotReady(f"the receipt of {note.receipt.charge_id} has not gone yet")
    key = f"refund_note:{refund_id}"
    message = build_message(
        "refund_note",
        note.receipt.recipient,
        org,
        key=key,
        note=note,
        receipt=note.receipt,
        paid_on=_date(note.receipt.paid_at, ctx, note.receipt.recipient),
        refunded_on=_date(note.refunded_at, ctx, note.receipt.recipient),
    )
    send_message(ctx.mail, message, name=key)
    return None


def run_payment_failed(session: Session, payload: Mapping[str, Any], ctx: JobContext) -> str | None:
    org = Organisation.from_settings(ctx.settings)
    invoice_id = str(payload["invoice_id"])
    notice = failed_payment_for(session, invoice_id, org)
    if notice is None:
        return "the invoice was paid meanwhile"
    key = f"payment_failed:{invoice_id}"
    message = build_message("payment_failed", notice.recipient, org, key=key, notice=notice)
    send_message(ctx.mail, message, name=key)
    return None


def run_statement(session: Session, payload: Mapping[str, Any], ctx: JobContext) -> str | None:
    org = Organisation.from_settings(ctx.settings)
    year, donor_id = int(payload["year"]), int(payload["donor_id"])
    zone = reporting_zone(ctx.settings)
    statement = statement_for(session, donor_id, year, zone)
    if statement is None:
        raise JobError(f"no donor {donor_id}")
    # In the language the donor last gave in.
    language = donor_locale(latest_checkout(session, donor_id), org.default_locale)
    recipient = Recipient(statement.donor_id, statement.email, statement.name, language)
    key = f"statement:{year}:{donor_id}"
    message = build_message(
        "statement",
        recipient,
        org,
        key=key,
        subject_values={"year": year},
        statement=statement,
    )
    document = statement_pdf(
        statement,
        org,
        locale=recipient.locale,
        zone=zone,
        font_path=str(ctx.settings.get("PDF_FONT_PATH") or DEFAULT_FONT),
    )
    message.add_attachment(
        document, maintype="application", subtype="pdf", filename=f"statement-{year}.pdf"
    )
    if "Content-Language" not in message:  # add_attachment moved it into the text part
        message["Content-Language"] = recipient.locale.replace("_", "-")
    send_message(ctx.mail, message, name=key)
    return None


def _date(moment: Any, ctx: JobContext, recipient: Recipient) -> str:
    """A day as the organisation counts it (its reporting zone), in the donor's words."""
    return local_date(moment, reporting_zone(ctx.settings), recipient.locale)


RUNNERS: dict[str, Runner] = {
    "receipt": run_receipt,
    "refund_note": run_refund_note,
    "payment_failed": run_payment_failed,
    "statement": run_statement,
}
