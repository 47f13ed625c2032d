"""The finance staff pages under /ledger: dashboard, journal (and its CSV),
the whole-ledger export, donors, memberships, campaigns, and the webhook
events with replay.

Behind the staff login, deny by default (viewer and up; exports need
finance, replays admin). Views read through app.reports; the only writes are
audit entries and, for admins, replaying events through the worker. Viewers
never see donor emails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import date
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import get_locale
from sqlalchemy.orm import Session

from app import ledger, reports
from app.auth import audit, current_staff, protect_blueprint, staff_required
from app.charts import Point, bar_line_chart
from app.clock import utcnow
from app.donors import Donor
from app.extensions import database, db_session
from app.ledger import export as ledger_export
from app.money import format_money
from app.staff import can
from webhooks.inbox import StripeEvent, list_failed, reset_for_replay
from webhooks.worker import RetryPolicy, process_next

bp = Blueprint("finance", __name__, url_prefix="/ledger")
protect_blueprint(bp, "viewer")


@bp.before_request
def _one_snapshot_per_page() -> None:
    """A page reads the daily totals and the live rows in several statements:
    on PostgreSQL they all read one snapshot (REPEATABLE READ), so a posting
    committed meanwhile cannot put a page's numbers out of step. GETs only:
    a replay (POST) writes."""
    session = db_session()
    if request.method == "GET" and session.get_bind().dialect.name == "postgresql":
        session.commit()  # end what the login gate read; nothing is pending here
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


log = logging.getLogger(__name__)

LATEST_PAYMENTS = 10


# -- helpers ------------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return reports.reporting_zone(current_app.config.get("LEDGER_REPORTING_TZ"))


def _locale() -> str:
    return str(get_locale() or "en")


def _shows_contacts() -> bool:
    return can(current_staff(), "read_contacts")


def _money(minor: int | None, currency: str) -> str:
    return "" if minor is None else format_money(minor, currency, _locale())


def _donor_label(donor_id: int | None, name: str | None, email: str | None) -> str:
    """Who a row belongs to, as this staff member may see it: a viewer gets
    the name or "Donor #id", never the email."""
    if donor_id is None and not (name or email):
        return ""
    if _shows_contacts():
        if name and email:
            return f"{name} <{email}>"
        return name or email or f"Donor #{donor_id}"
    return name or (f"Donor #{donor_id}" if donor_id is not None else "Donor")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    zone = _zone()
    me = current_staff()
    return {
        "money": _money,
        "when": lambda moment: reports.local_time(moment, zone),
        "donor_label": _donor_label,
        "zone_name": zone.key,
        "show_contacts": can(me, "read_contacts"),
        "can_export": can(me, "export"),
        "can_replay": can(me, "replay"),
        "percent": _percent,
    }


def _percent(basis_points: int | None) -> str:
    if basis_points is None:
        return "-"
    return f"{basis_points // 100}.{basis_points % 100:02d} %"


def _day_arg(name: str) -> date | None:
    return reports.parse_day(request.args.get(name))


def _bounds(since: date | None, until: date | None) -> tuple[Any, Any]:
    zone = _zone()
    if since and until and until <= since:
        raise reports.ReportError("the end date must be after the start date")
    return (
        reports.day_start(since, zone) if since else None,
        reports.day_start(until, zone) if until else None,
    )


def _csv_chunks(chunks: Iterable[bytes], session: Session) -> Iterator[bytes]:
    """The ledger CSV in chunks (app.ledger.export: COPY on PostgreSQL, in
    constant memory however many rows stream through). The session (and
    its cursor) is released as soon as the last row is out or the client goes
    away, not only at the request's teardown."""
    try:
        yield from chunks
    finally:
        session.close()


def _csv_response(chunks: Iterable[bytes], session: Session, filename: str) -> Response:
    return Response(
        stream_with_context(_csv_chunks(chunks, session)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _bad_filter(template: str, message: str, **page: Any) -> tuple[str, int]:
    return render_template(template, error=message, **page), 400


# -- dashboard ----------------------------------------------------------------------


@bp.get("/")
def dashboard() -> Any:
    session = db_session()
    zone = _zone()
    now = utcnow()
    months = reports.monthly_figures(session, zone, now)
    currencies = sorted({c for month in months for c in month.figures})
    charts = {}
    for currency in currencies:
        points = [
            Point(
                month.first.strftime("%Y-%m"),
                month.figures[currency].gross if currency in month.figures else 0,
                month.figures[currency].net if currency in month.figures else 0,
            )
            for month in months
        ]
        charts[currency] = bar_line_chart(
            points,
            title=f"Monthly gross and net in {currency.upper()}, last 13 months",
            bar_name="Gross",
            line_name="Net",
            fmt=partial(_money, currency=currency),
            chart_id=f"chart-{currency}",
        )
    return render_template(
        "finance/dashboard.html",
        months=list(reversed(months)),
        this_month=months[-1],
        currencies=currencies,
        charts=charts,
        members=reports.membership_stats(session, zone, now),
        latest=reports.latest_payments(session, LATEST_PAYMENTS),
        health=reports.pipeline_health(session),
        has_movements=reports.has_movements(session),
    )


# -- journal ------------------------------------------------------------------------


def _journal_filter() -> tuple[reports.JournalFilter, dict[str, str]]:
    """The filter from the query string, and the form's values. Without a
    `since` argument at all the journal opens on this month; an empty one
    means from the beginning."""
    zone = _zone()
    args = request.args
    form = {
        name: args.get(name, "").strip()
        for name in ("since", "until", "kind", "currency", "campaign", "donor")
    }
    if "since" not in args:
        form["since"] = reports.month_of(utcnow(), zone).isoformat()
    since, until = _bounds(reports.parse_day(form["since"]), reports.parse_day(form["until"]))
    kind = form["kind"] or None
    if kind and kind not in ledger.MOVEMENT_KINDS:
        raise reports.ReportError(f"{kind!r} is not a kind of movement")
    currency = form["currency"].lower() or None
    donor_id = reports.find_donor_id(db_session(), form["donor"], by_email=_shows_contacts())
    return (
        reports.JournalFilter.for_donor(
            db_session(),
            donor_id,
            since=since,
            until=until,
            kind=kind,
            currency=currency,
            campaign=form["campaign"] or None,
        ),
        form,
    )


@bp.get("/journal")
def journal() -> Any:
    session = db_session()
    page_info: dict[str, Any] = {
        "kinds": ledger.MOVEMENT_KINDS,
        "form": {
            k: request.args.get(k, "")
            for k in ("since", "until", "kind", "currency", "campaign", "donor")
        },
    }
    try:
        filters, form = _journal_filter()
        after = reports.Cursor.decode(request.args.get("after"))
        before = reports.Cursor.decode(request.args.get("before"))
    except reports.ReportError as exc:
        return _bad_filter("finance/journal.html", str(exc), page=None, totals={}, **page_info)
    page_info["form"] = form
    page = reports.journal_page(session, filters, after=after, before=before)
    totals = reports.journal_totals(session, filters)
    query: dict[str, Any] = dict(form)
    return render_template(
        "finance/journal.html",
        page=page,
        totals=totals,
        query=query,
        next_url=url_for(".journal", **query, after=page.next_cursor.encode())
        if page.next_cursor
        else None,
        previous_url=url_for(".journal", **query, before=page.previous_cursor.encode())
        if page.previous_cursor
        else None,
        csv_url=url_for(".journal_csv", **query),
        has_movements=reports.has_movements(session),
        **page_info,
    )


@bp.get("/journal.csv")
@staff_required("finance")
def journal_csv() -> Any:
    try:
        filters, form = _journal_filter()
    except reports.ReportError as exc:
        abort(400, str(exc))
    session = db_session()
    # The donor by number, never by the email that may have been typed.
    chosen = {k: v for k, v in form.items() if v and k != "donor"}
    if filters.donor_id is not None:
        chosen["donor_id"] = str(filters.donor_id)
    audit("export", {"what": "journal", **chosen})
    session.commit()
    log.info("journal CSV exported")
    stamp = utcnow().astimezone(_zone()).strftime("%Y-%m-%d")
    chunks = ledger_export.iter_filtered_csv_chunks(
        session,
        filters.rows(),
        filters.apply,
        reports.journal_csv_rows(session, filters),
        bom=True,
    )
    return _csv_response(chunks, session, f"journal-{stamp}.csv")


@bp.get("/export.csv")
@staff_required("finance")
def export_csv() -> Any:
    """The whole ledger CSV (CONTRACT.md) with a UTF-8 byte-order mark;
    `since`/`until` as the CLI's --since/--until."""
    try:
        since_day, until_day = _day_arg("since"), _day_arg("until")
        since, until = _bounds(since_day, until_day)
    except reports.ReportError as exc:
        abort(400, str(exc))
    session = db_session()
    detail = {"what": "ledger"}
    if since_day:
        detail["since"] = since_day.isoformat()
    if until_day:
        detail["until"] = until_day.isoformat()
    audit("export", detail)
    session.commit()
    log.info("ledger CSV exported")
    stamp = utcnow().astimezone(_zone()).strftime("%Y-%m-%d")
    chunks = ledger_export.iter_csv_chunks(session, since=since, until=until, bom=True)
    return _csv_response(chunks, session, f"ledger-{stamp}.csv")


# -- donors -------------------------------------------------------------------------


@bp.get("/donors")
def donors() -> Any:
    text = request.args.get("q", "").strip()[:200]
    found: list[Donor] = []
    if text:
        found = reports.search_donors(db_session(), text, by_email=_shows_contacts())
    return render_template("finance/donors.html", q=text, donors=found)


@bp.get("/donors/<int:donor_id>")
def donor(donor_id: int) -> Any:
    history = reports.donor_history(db_session(), donor_id)
    if history is None:
        abort(404)
    return render_template("finance/donor.html", history=history)


# -- memberships --------------------------------------------------------------------


@bp.get("/memberships")
def memberships() -> Any:
    session = db_session()
    status = request.args.get("status", "").strip() or None
    currency = request.args.get("currency", "").strip().lower() or None
    after = request.args.get("after", "").strip()
    after_id = int(after) if after.isdigit() else None
    page, next_after = reports.list_memberships(
        session, status=status, currency=currency, after_id=after_id
    )
    query: dict[str, Any] = {"status": status or "", "currency": currency or ""}
    return render_template(
        "finance/memberships.html",
        stats=reports.membership_stats(session, _zone(), utcnow()),
        page=page,
        query=query,
        statuses=reports.MEMBERSHIP_STATUSES,
        next_url=url_for(".memberships", **query, after=next_after) if next_after else None,
        first_url=url_for(".memberships", **query) if after_id else None,
    )


# -- campaigns ----------------------------------------------------------------------


@bp.get("/campaigns")
def campaigns() -> Any:
    form = {"since": request.args.get("since", ""), "until": request.args.get("until", "")}
    try:
        since, until = _bounds(_day_arg("since"), _day_arg("until"))
    except reports.ReportError as exc:
        return _bad_filter("finance/campaigns.html", str(exc), lines=[], form=form)
    lines = reports.campaign_report(db_session(), since, until)
    return render_template("finance/campaigns.html", lines=lines, form=form)


# -- events -------------------------------------------------------------------------


@bp.get("/events")
def events() -> Any:
    session = db_session()
    status = request.args.get("status", "").strip() or None
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
        next_url=url_for(".events", **query, before=next_before) if next_before else None,
        first_url=url_for(".events", **query) if before_id else None,
    )


def _replay(stripe_event_ids: list[str]) -> list[str]:
    """Process the (already reset and committed) events now, one transaction
    each, as `donations events replay` does; returns one line per event."""
    policy = RetryPolicy.from_settings(current_app.config)
    payments = current_app.extensions["donations.payments"]
    lines = []
    for event_id in stripe_event_ids:
        outcome = process_next(database(), payments, policy, stripe_event_id=event_id)
        if outcome is None:
            lines.append(f"{event_id}: taken by another worker")
        else:
            lines.append(f"{event_id} {outcome.type}: {outcome.status}")
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
        return redirect(url_for(".events"), 303)
    if not _confirmed():
        return render_template("finance/replay_confirm.html", events=[event], one=True)
    reset_for_replay(session, [event], utcnow())
    audit("replay", {"events": [event.stripe_event_id]})
    session.commit()
    for line in _replay([event.stripe_event_id]):
        flash(f"Replayed {line}")
    return redirect(url_for(".events"), 303)


@bp.route("/events/replay-failed", methods=["GET", "POST"])
@staff_required("admin")
def replay_failed() -> Any:
    session = db_session()
    failed = list_failed(session)
    if not _confirmed():
        return render_template("finance/replay_confirm.html", events=failed, one=False)
    if not failed:
        flash("No failed or dead events to replay.")
        return redirect(url_for(".events"), 303)
    reset_for_replay(session, failed, utcnow())
    chosen = [event.stripe_event_id for event in failed]
    audit("replay", {"events": chosen, "failed": True})
    session.commit()
    lines = _replay(chosen)
    processed = sum(1 for line in lines if line.endswith(": processed"))
    flash(f"Replayed {len(lines)} events: {processed} processed.")
    return redirect(url_for(".events", status="failed"), 303)
