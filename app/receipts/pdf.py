"""The annual statement as a PDF (fpdf2, pure Python), the same figures as
the statement email. Uses a Unicode TrueType font (PDF_FONT_PATH, DejaVu Sans
by default) so any name and any locale's money prints; without one it falls
back to Helvetica and replaces what Latin-1 cannot show.

Builds bytes only; no Flask, no `stripe`.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from app.money import format_money
from app.receipts.letters import Organisation
from app.receipts.messages import gettext, local_date
from app.receipts.statements import Statement


def N_(text: str) -> str:
    return text


KIND_LABELS = {
    "donation": N_("Gift"),
    "membership_payment": N_("Membership payment"),
    "refund": N_("Refund"),
    "refund_failure": N_("Refund reversed"),
    "dispute": N_("Disputed"),
    "dispute_reversal": N_("Dispute won back"),
}


def statement_pdf(
    statement: Statement, org: Organisation, *, locale: str, zone: ZoneInfo, font_path: str
) -> bytes:
    # Loaded here, not at the top: fpdf2 (with fontTools and Pillow) would add
    # a quarter to every process's start-up, and only statements need it.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(gettext(locale, "Giving statement %(year)s", year=statement.year))
    pdf.set_author(org.name)
    font = Path(font_path) if font_path else None
    unicode_font = bool(font and font.is_file())
    if unicode_font and font is not None:
        pdf.add_font("body", "", str(font))
        family = "body"
    else:
        family = "helvetica"

    def text(value: str) -> str:
        if unicode_font:
            return value
        return value.encode("latin-1", "replace").decode("latin-1")

    def line(value: str, size: int = 10, height: float = 6) -> None:
        pdf.set_font(family, size=size)
        pdf.multi_cell(0, height, text(value), new_x="LMARGIN", new_y="NEXT")

    pdf.add_page()
    line(org.name, 16, 9)
    for part in (
        org.address,
        org.tax_id and f"{gettext(locale, 'Tax number')}: {org.tax_id}",
        org.tax_status,
        org.contact_email,
    ):
        if part:
            line(part, 9, 5)
    pdf.ln(6)
    line(gettext(locale, "Giving statement %(year)s", year=statement.year), 14, 8)
    line(statement.name or statement.email, 11)
    line(f"{gettext(locale, 'Donor number')}: {statement.donor_id}", 9, 5)
    pdf.ln(4)
    for totals in statement.totals:

        def money(minor: int, currency: str = totals.currency) -> str:
            return format_money(minor, currency, locale)

        line(f"{totals.currency.upper()}", 11, 7)
        line(f"{gettext(locale, 'Gifts')} ({totals.payments}): {money(totals.gifts_minor)}")
        if totals.refunds_minor:
            line(f"{gettext(locale, 'Refunds')}: {money(totals.refunds_minor)}")
        if totals.disputes_minor:
            line(f"{gettext(locale, 'Disputes')}: {money(totals.disputes_minor)}")
        line(f"{gettext(locale, 'Net giving')}: {money(totals.net_minor)}", 11, 7)
        pdf.ln(2)
    if statement.lines:
        pdf.ln(2)
        line(gettext(locale, "Every movement of the year"), 11, 7)
        for item in statement.lines:
            label = gettext(locale, KIND_LABELS.get(item.kind, item.kind))
            amount = format_money(item.amount_minor, item.currency, locale)
            line(f"{local_date(item.occurred_at, zone, locale)}  {label}  {amount}", 9, 5)
    return bytes(pdf.output())
