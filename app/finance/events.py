"""What failed, under /ledger: the webhook events (/ledger/events: the inbox
with its pipeline's health, and replay of one event or of every failed and
dead one (admins), through the worker's own code, one transaction per event),
and failed payments (/ledger/failed-payments: failed charges and invoices
whose payment failed).

Behind the staff login (viewer and up; replays admin); a replay is audited.
The inbox and the worker come as `app.extensions["donations.webhooks"]`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from app.clock import utcnow
from app.extensions import database, db_session
from app.finance import reports
from app.finance.area import bad_filter, staff_area
from app.payments import Webhooks
from app.staff.gate import audit, staff_required
from webhooks.inbox import StripeEvent  # the inbox's table (read only)

bp = Blueprint("events", __name__, url_prefix="/ledger")
staff_area(bp, "viewer")


@bp.get("/events")
def index() -> Any:
    session = db_session()
    try:
        status = reports.parse_choice(
            request.args.get("status"), reports.EVENT_STATUSES, "an event status"
        )
    except reports.ReportError as exc:
        return bad_filter(
            "finance/events.html",
            str(exc),
            events=[],
            health=reports.pipeline_health(session),
            statuses=reports.EVENT_STATUSES,
            query={k: request.args.get(k, "") for k in ("status", "type")},
        )
    event_type = request.args.get("type", "").strip()[:255] or None
    before = request.args.get("before", "").strip()
    before_id = int(before) if before.isdigit() else None
    page, next_before = reports.list_events(
        session, status=status, event_type=event_type, before_id=before_id
    )
    query: dict[str, Any] = {"status": status or "", "type": event_type or ""}
    return render_template(
        "finance/events.html",
        events=page,
        health=reports.pipeline_health(session),
        statuses=reports.EVENT_STATUSES,
        query=query,
        next_url=url_for(".index", **query, before=next_before) if next_before else None,
        first_url=url_for(".index", **query) if before_id else None,
    )


@bp.get("/failed-payments")
def failed_payments() -> Any:
    return render_template(
        "finance/failed_payments.html", failures=reports.failed_payments(db_session())
    )


def _webhooks() -> Webhooks:
    hooks: Webhooks = current_app.extensions["donations.webhooks"]
    return hooks


def _replay(stripe_event_ids: list[str]) -> list[str]:
    """Process the (already reset and committed) events now, one transaction
    each, as `donations events replay` does; returns one line per event."""
    payments = current_app.extensions["donations.payments"]
    lines = []
    for event_id in stripe_event_ids:
        done = _webhooks().replay(database(), payments, current_app.config, event_id)
        lines.append(
            f"{event_id}: taken by another worker" if done is None else f"{event_id} {done}"
        )
    return lines


def _confirmed() -> bool:
    return request.method == "POST" and request.form.get("confirm") == "yes"


@bp.route("/events/<int:event_row_id>/replay", methods=["GET", "POST"])
@staff_required("admin")
def replay_event(event_row_id: int) -> Any:
    session = db_session()
    event = session.get(StripeEvent, event_row_id)
    if event is None:
        abort(404)
    if event.status == "skipped":
        flash("That event was skipped (another livemode) and is never replayed.")
        return redirect(url_for(".index"), 303)
    if not _confirmed():
        return render_template("finance/replay_confirm.html", events=[event], one=True)
    _webhooks().reset_for_replay(session, [event], utcnow())
    audit("replay", {"events": [event.stripe_event_id]})
    session.commit()
    for line in _replay([event.stripe_event_id]):
        flash(f"Replayed {line}")
    return redirect(url_for(".index"), 303)


@bp.route("/events/replay-failed", methods=["GET", "POST"])
@staff_required("admin")
def replay_failed() -> Any:
    session = db_session()
    failed = _webhooks().list_failed(session)
    if not _confirmed():
        return render_template("finance/replay_confirm.html", events=failed, one=False)
    if not failed:
        flash("No failed or dead events to replay.")
        return redirect(url_for(".index"), 303)
    _webhooks().reset_for_replay(session, failed, utcnow())
    chosen = [event.stripe_event_id for event in failed]
    audit("replay", {"events": chosen, "failed": True})
    session.commit()
    lines = _replay(chosen)
    processed = sum(1 for line in lines if line.endswith(": processed"))
    flash(f"Replayed {len(lines)} events: {processed} processed.")
    return redirect(url_for(".index", status="failed"), 303)
