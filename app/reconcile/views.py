"""The reconciliation pages (finance and admin): `/ledger/reconciliation`, the
last sync's report with a button that asks the worker for a new run, and
`/ledger/payouts/<po_id>` (and `.csv`), one bank deposit broken into the
balance transactions it paid out: what an accountant attaches to the bank
statement line. Reads, except the run request and the audit entries.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import database, db_session
from app.finance import area, reports
from app.finance.area import csv_response, staff_area
from app.ledger import export as ledger_export
from app.reconcile.models import SyncRequest, SyncRun
from app.reconcile.payouts import (
    PayoutFilter,
    linked_count,
    payout_csv_rows,
    payout_record,
    payout_rows,
)
from app.reconcile.schedule import request_run
from app.staff.gate import audit, current_staff

bp = Blueprint("reconcile", __name__, url_prefix="/ledger")
staff_area(bp, "finance")

PAYOUT_ID = re.compile(r"po_[A-Za-z0-9_]{1,250}", re.ASCII)
RECENT_RUNS = 10


@bp.get("/reconciliation")
def reconciliation() -> Any:
    session = db_session()
    runs = list(
        session.scalars(select(SyncRun).order_by(SyncRun.finished_at.desc()).limit(RECENT_RUNS))
    )
    waiting = session.scalars(
        select(SyncRequest).where(SyncRequest.started_at.is_(None)).order_by(SyncRequest.id)
    ).all()
    last = runs[0] if runs else None
    return render_template(
        "reconcile/reconciliation.html",
        last=last,
        report=json.loads(last.report) if last else None,
        runs=runs,
        waiting=waiting,
    )


@bp.post("/reconciliation/run")
def run_reconciliation() -> Any:
    """Ask a worker for a run: this month in the reporting zone by default,
    or the days given."""
    try:
        since_day, until_day = area.day_arg("since"), area.day_arg("until")
        if since_day is None and until_day is None:
            since_day = reports.month_of(utcnow(), area.zone())
        since, until = area.bounds(since_day, until_day)
    except reports.ReportError as exc:
        abort(400, str(exc))
    report_only = request.form.get("report_only") == "yes"
    staff = current_staff()
    request_run(
        database(),
        staff_id=staff.id if staff else None,
        since=since,
        until=until,
        report_only=report_only,
    )
    audit("reconcile_requested", {"report_only": report_only})
    db_session().commit()
    flash("A reconciliation run was asked for; a worker carries it out within a minute.")
    return redirect(url_for(".reconciliation"), 303)


def _payout_or_404(po_id: str) -> Any:
    if not PAYOUT_ID.fullmatch(po_id):
        abort(404)
    payout = payout_record(db_session(), po_id)
    if payout is None:
        abort(404)
    return payout


@bp.get("/payouts/<po_id>")
def payout(po_id: str) -> Any:
    record = _payout_or_404(po_id)
    session = db_session()
    rows = list(payout_rows(session, PayoutFilter(po_id)))
    net = sum(r.net_minor or 0 for r in rows if r.currency == record.currency)
    return render_template(
        "reconcile/payout.html",
        payout=record,
        rows=rows,
        linked=linked_count(session, po_id),
        net=net,
        ties_out=bool(rows) and net == record.amount_minor,
    )


@bp.get("/payouts/<po_id>.csv")
def payout_csv(po_id: str) -> Any:
    _payout_or_404(po_id)
    session = db_session()
    audit("export", {"what": "payout", "payout": po_id})
    session.commit()
    chosen = PayoutFilter(po_id)
    chunks = ledger_export.iter_filtered_csv_chunks(
        session, chosen.rows(), chosen.apply, payout_csv_rows(session, chosen), bom=True
    )
    return csv_response(chunks, session, f"payout-{po_id}.csv")
