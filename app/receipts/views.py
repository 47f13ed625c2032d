"""The annual statement as a PDF for finance staff:
`GET /ledger/donors/<id>/statement/<year>.pdf`, behind the staff gate at the
finance role (viewers get 403: it names the donor), audited as an export.
Reads only, apart from the audit entry.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app

from app.extensions import db_session
from app.finance import area
from app.finance.area import staff_area
from app.receipts.jobs import DEFAULT_FONT
from app.receipts.letters import Organisation
from app.receipts.pdf import statement_pdf
from app.receipts.statements import FIRST_YEAR, LAST_YEAR, statement_for
from app.staff.gate import audit

bp = Blueprint("receipts", __name__, url_prefix="/ledger")
staff_area(bp, "finance")


@bp.get("/donors/<int:donor_id>/statement/<int:year>.pdf")
def statement(donor_id: int, year: int) -> Any:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        abort(404)
    session = db_session()
    zone = area.zone()
    found = statement_for(session, donor_id, year, zone)
    if found is None:
        abort(404)
    org = Organisation.from_settings(current_app.config)
    document = statement_pdf(
        found,
        org,
        locale=org.default_locale,
        zone=zone,
        font_path=str(current_app.config.get("PDF_FONT_PATH") or DEFAULT_FONT),
    )
    audit("export", {"what": "statement", "donor_id": donor_id, "year": year})
    session.commit()
    return Response(
        document,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="statement-{donor_id}-{year}.pdf"',
            "Cache-Control": "no-store",
        },
    )
