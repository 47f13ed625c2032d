"""What donors wrote at checkout (dedication, comment, "don't show my name"),
for finance and admin staff: per charge for the journal and donor pages, and
as columns appended to the journal's staff CSV after the contract's columns
(the ledger CSV of CONTRACT.md never carries them). Reads only: no Flask, no
`stripe`, no writes; the caller decides who may see them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from app import ledger
from app.donate.models import Checkout
from app.finance.reports.journal import JournalFilter
from app.ledger import export as ledger_export
from app.ledger.records import Membership, Payment

NOTE_COLUMNS = ("dedication_kind", "dedication_name", "comment", "anonymous")
DEDICATION_WORDS = {"memory": "In memory of", "honour": "In honour of"}


@dataclass(frozen=True)
class DonorNote:
    dedication_kind: str | None
    dedication_name: str | None
    comment: str | None
    anonymous: bool | None  # None: no checkout behind the row

    @property
    def dedication(self) -> str:
        if not self.dedication_kind:
            return ""
        words = DEDICATION_WORDS.get(self.dedication_kind, self.dedication_kind)
        return f"{words} {self.dedication_name or ''}".strip()

    @property
    def is_empty(self) -> bool:
        return not (self.dedication_kind or self.comment or self.anonymous)

    def csv_cells(self) -> list[str]:
        return [
            self.dedication_kind or "",
            ledger.guard_formula(self.dedication_name),
            ledger.guard_formula(self.comment),
            "" if self.anonymous is None else ("yes" if self.anonymous else "no"),
        ]


NO_NOTE = DonorNote(None, None, None, None)


def _note_aliases() -> tuple[Any, Any, Any]:
    """Aliases joining a charge id to its checkout (directly, or through the
    membership whose invoice it paid), as the ledger rows find it."""
    payment = aliased(Payment, name="np")
    membership = aliased(Membership, name="nm")
    checkout = aliased(Checkout, name="nc")
    return payment, membership, checkout


def notes_for_charges(session: Session, charge_ids: Iterable[str | None]) -> dict[str, DonorNote]:
    """{charge id: what its donor wrote}, for the charges that carry a note
    (one query for a page's rows)."""
    ids = sorted({c for c in charge_ids if c})
    if not ids:
        return {}
    payment, membership, checkout = _note_aliases()
    query = (
        select(
            payment.stripe_charge_id,
            checkout.dedication_kind,
            checkout.dedication_name,
            checkout.comment,
            checkout.anonymous,
        )
        .select_from(payment)
        .outerjoin(membership, membership.stripe_subscription_id == payment.stripe_subscription_id)
        .join(checkout, checkout.id == func.coalesce(payment.checkout_id, membership.checkout_id))
        .where(
            payment.stripe_charge_id.in_(ids),
            or_(
                checkout.dedication_kind.is_not(None),
                checkout.comment.is_not(None),
                checkout.anonymous.is_(True),
            ),
        )
    )
    return {
        charge: DonorNote(kind, name, comment, bool(anonymous))
        for charge, kind, name, comment, anonymous in session.execute(query)
    }


def journal_staff_csv_rows(session: Session, filters: JournalFilter) -> Iterator[list[str]]:
    """The filtered journal as the ledger CSV's rows (app.ledger.format_row)
    with NOTE_COLUMNS appended, in the export's order, streamed."""
    rows = filters.rows()
    payment, membership, checkout = _note_aliases()
    query = (
        filters.apply(
            select(
                rows,
                checkout.id.label("note_checkout"),
                checkout.dedication_kind.label("note_kind"),
                checkout.dedication_name.label("note_name"),
                checkout.comment.label("note_comment"),
                checkout.anonymous.label("note_anonymous"),
            )
            .select_from(rows)
            .outerjoin(payment, payment.stripe_charge_id == rows.c.stripe_charge_id)
            .outerjoin(
                membership, membership.stripe_subscription_id == payment.stripe_subscription_id
            )
            .outerjoin(
                checkout, checkout.id == func.coalesce(payment.checkout_id, membership.checkout_id)
            ),
            rows,
        )
        .order_by(rows.c.occurred_at, rows.c.key)
        .execution_options(yield_per=1000)
    )
    for result in session.execute(query):
        note = DonorNote(
            result.note_kind,
            result.note_name,
            result.note_comment,
            None if result.note_checkout is None else bool(result.note_anonymous),
        )
        yield ledger.format_row(ledger.row_from(result)) + note.csv_cells()


JOURNAL_STAFF_COLUMNS = (*ledger.CSV_COLUMNS, *NOTE_COLUMNS)


def staff_csv_chunks(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, bom: bool = True
) -> Iterator[bytes]:
    """A staff CSV (the journal's with NOTE_COLUMNS, the donor list), written
    as the ledger CSV is (same quoting and line ends), CHUNK_ROWS rows per chunk."""
    buffer = io.StringIO()
    if bom:
        buffer.write(ledger_export.CSV_BOM)
    writer = csv.writer(buffer, lineterminator=ledger_export.LINE_END)
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % ledger_export.CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")
