"""Receipts and statements to donors: what each message says (letters), the
messages in the donor's language (messages, templates/email/), the annual
statement (statements, pdf), the outbox jobs that send them (jobs), the
statement PDF for finance staff (views) and `donations receipts` (cli).

Re-exports the `queue_*` functions the webhook handlers call in their event's
transaction. No Flask, no `stripe`, no commits here.
"""

from app.receipts.jobs import (
    RUNNERS,
    is_news,
    queue_payment_failed,
    queue_receipt,
    queue_refund_note,
    queue_statement,
)

__all__ = [
    "RUNNERS",
    "is_news",
    "queue_payment_failed",
    "queue_receipt",
    "queue_refund_note",
    "queue_statement",
]
