"""The finance staff pages under /ledger: dashboard, journal (and its CSV),
the whole-ledger export, donors, memberships and campaigns.

Behind the staff login, deny by default (viewer and up; exports need
finance). Views read through app.finance.reports; the only writes are audit
entries. Viewers never see donor emails.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, url_for

from app import ledger
from app.appeals.funnel import appeal_funnel
from app.clock import utcnow
from app.donors import Donor
from app.extensions import db_session
from app.finance import area, reports
from app.finance.area import (
    bad_filter,
    bounds,
    csv_response,
    day_arg,
    money,
    shows_contacts,
    staff_area,
)
from app.finance.charts import Point, bar_line_chart
from app.ledger import export as ledger_export
from app.money import format_plain
from app.reconcile.schedule import latest_run
from app.staff.gate import audit, staff_required

bp = Blueprint("finance", __name__, url_prefix="/ledger")
staff_area(bp, "viewer")
log = logging.getLogger(__name__)

LATEST_PAYMENTS = 10


# -- dashboard ----------------------------------------------------------------------


@bp.get("/")
def dashboard() -> Any:
    session = db_session()
    zone = area.zone()
    now = utcnow()
    form = {k: request.args.get(k, "").strip() for k in ("period", "since", "until")}
    error = None
    try:
        period = reports.choose_period(form["period"], form["since"], form["until"], now, zone)
    except reports.ReportError as exc:
        error = str(exc)
        period = reports.choose_period(None, None, None, now, zone)
    kept = current_app.extensions.setdefault("donations.first_gifts", reports.FirstGifts())
    months = reports.monthly_figures(session, zone, now, first_gifts=kept)
    if period.kind == "month":  # this month: already among the thirteen
        figures, new_donors = months[-1].figures, months[-1].new_donors
    else:
        start, end = period.bounds(zone)
        figures = reports.figures_between(session, start, end)
        new_donors = reports.new_donor_counts(session, [start, end])[0]
    latest = reports.latest_payments(session, LATEST_PAYMENTS)
    page = render_template(
        "finance/dashboard.html",
        months=list(reversed(months)),
        period=period,
        period_figures=figures,
        period_new_donors=new_donors,
        periods=reports.PERIODS,
        form=form,
        error=error,
        currencies=(currencies := sorted({c for month in months for c in month.figures})),
        charts=monthly_charts(months, currencies),
        members=reports.membership_stats(session, zone, now),
        latest=latest,
        notes=page_notes(latest),
        health=reports.pipeline_health(session),
        has_movements=reports.has_movements(session),
        sync_run=latest_run(session),
    )
    return (page, 400) if error else page


def monthly_charts(months: list[reports.Month], currencies: list[str]) -> dict[str, Any]:
    """A chart of monthly gross (bars) and net (line) per currency."""
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
            fmt=partial(money, currency=currency),
            chart_id=f"chart-{currency}",
        )
    return charts


def page_notes(lines: list[reports.JournalLine]) -> dict[str, reports.DonorNote]:
    """What the donors of these payment rows wrote, for staff who may read
    contacts (finance, admin); nothing for viewers."""
    if not shows_contacts():
        return {}
    charges = [line.row.stripe_id for line in lines if line.row.kind in ledger.PAYMENT_KINDS]
    return reports.notes_for_charges(db_session(), charges)


# -- journal ------------------------------------------------------------------------


def _journal_filter() -> tuple[reports.JournalFilter, dict[str, str]]:
    """The filter from the query string, and the form's values. Without a
    `since` argument at all the journal opens on this month; an empty one
    means from the beginning."""
    zone = area.zone()
    args = request.args
    form = {
        name: args.get(name, "").strip()
        for name in ("since", "until", "kind", "currency", "campaign", "donor")
    }
    if "since" not in args:
        form["since"] = reports.month_of(utcnow(), zone).isoformat()
    since, until = bounds(reports.parse_day(form["since"]), reports.parse_day(form["until"]))
    kind = reports.parse_choice(form["kind"], ledger.MOVEMENT_KINDS, "a kind of movement")
    currency = reports.parse_currency(form["currency"])
    donor_id = reports.find_donor_id(db_session(), form["donor"], by_email=shows_contacts())
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
        return bad_filter("finance/journal.html", str(exc), page=None, totals={}, **page_info)
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
        notes=page_notes(page.lines),
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
    stamp = utcnow().astimezone(area.zone()).strftime("%Y-%m-%d")
    # The contract's columns, then what donors wrote (finance staff only).
    chunks = reports.staff_csv_chunks(
        reports.JOURNAL_STAFF_COLUMNS, reports.journal_staff_csv_rows(session, filters)
    )
    return csv_response(chunks, session, f"journal-{stamp}.csv")


@bp.get("/export.csv")
@staff_required("finance")
def export_csv() -> Any:
    """The whole ledger CSV (CONTRACT.md) with a UTF-8 byte-order mark;
    `since`/`until` as the CLI's --since/--until."""
    try:
        since_day, until_day = day_arg("since"), day_arg("until")
        since, until = bounds(since_day, until_day)
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
    stamp = utcnow().astimezone(area.zone()).strftime("%Y-%m-%d")
    chunks = ledger_export.iter_csv_chunks(session, since=since, until=until, bom=True)
    return csv_response(chunks, session, f"ledger-{stamp}.csv")


# -- donors -------------------------------------------------------------------------


def _donor_list_choice() -> tuple[str, str, int, int]:
    """(currency, sort, page, size) of the donor list from the query string."""
    args = request.args
    currency = reports.parse_currency(args.get("currency")) or current_app.config["CURRENCIES"][0]
    sort = args.get("sort", "").strip() or "lifetime"
    if sort not in reports.DONOR_SORTS:
        raise reports.ReportError(
            f"{sort!r} is not a sort order (one of {', '.join(reports.DONOR_SORTS)})"
        )
    numbers = []
    for name, default in (("page", 1), ("size", reports.PAGE_SIZE)):
        text = args.get(name, "").strip() or str(default)
        if not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= 10_000:
            raise reports.ReportError(f"{name} must be a number from 1 to 10000")
        numbers.append(int(text))
    return currency, sort, numbers[0], min(numbers[1], 500)


@bp.get("/donors")
def donors() -> Any:
    text = request.args.get("q", "").strip()[:200]
    form = {k: request.args.get(k, "").strip() for k in ("currency", "sort")}
    found: list[Donor] = []
    if text:
        found = reports.search_donors(db_session(), text, by_email=shows_contacts())
        return render_template("finance/donors.html", q=text, donors=found, form=form)
    try:
        currency, sort, page_number, size = _donor_list_choice()
        ranked, more = reports.rank_donors(
            db_session(), currency, sort, page=page_number, size=size
        )
    except reports.ReportError as exc:
        return bad_filter(
            "finance/donors.html",
            str(exc),
            q="",
            donors=[],
            form=form,
            ranked=[],
            sorts=reports.DONOR_SORTS,
        )
    query = {"currency": currency, "sort": sort, "size": size}
    form = {"currency": currency, "sort": sort}
    return render_template(
        "finance/donors.html",
        q="",
        donors=[],
        form=form,
        ranked=ranked,
        sorts=reports.DONOR_SORTS,
        offset=(page_number - 1) * size,
        next_url=url_for(".donors", **query, page=page_number + 1) if more else None,
        previous_url=url_for(".donors", **query, page=page_number - 1) if page_number > 1 else None,
        csv_url=url_for(".donors_csv", currency=currency, sort=sort),
    )


DONOR_CSV_COLUMNS = (
    "donor_id",
    "donor_email",
    "donor_name",
    "currency",
    "lifetime_amount",
    "payments",
    "last_gift_at",
)


@bp.get("/donors.csv")
@staff_required("finance")
def donors_csv() -> Any:
    try:
        currency, sort, _page, _size = _donor_list_choice()
    except reports.ReportError as exc:
        abort(400, str(exc))
    session = db_session()
    audit("export", {"what": "donors", "currency": currency, "sort": sort})
    session.commit()
    log.info("donor list CSV exported")
    stamp = utcnow().astimezone(area.zone()).strftime("%Y-%m-%d")
    rows = (
        [
            str(d.donor_id),
            d.email,
            ledger.guard_formula(d.name),
            d.currency,
            format_plain(d.lifetime_minor, d.currency),
            str(d.payments),
            ledger.format_timestamp(d.last_gift_at),
        ]
        for d in reports.ranked_donor_rows(session, currency, sort)
    )
    chunks = reports.staff_csv_chunks(DONOR_CSV_COLUMNS, rows)
    return csv_response(chunks, session, f"donors-{currency}-{stamp}.csv")


@bp.get("/donors/<int:donor_id>")
def donor(donor_id: int) -> Any:
    history = reports.donor_history(db_session(), donor_id)
    if history is None:
        abort(404)
    return render_template("finance/donor.html", history=history, notes=page_notes(history.lines))


# -- memberships --------------------------------------------------------------------


@bp.get("/memberships")
def memberships() -> Any:
    session = db_session()
    form = {k: request.args.get(k, "").strip() for k in ("status", "currency")}
    try:
        status = reports.parse_choice(
            form["status"], reports.MEMBERSHIP_STATUSES, "a membership status"
        )
        currency = reports.parse_currency(form["currency"])
    except reports.ReportError as exc:
        return bad_filter(
            "finance/memberships.html",
            str(exc),
            stats=reports.membership_stats(session, area.zone(), utcnow()),
            page=[],
            query=form,
            statuses=reports.MEMBERSHIP_STATUSES,
        )
    after = request.args.get("after", "").strip()
    after_id = int(after) if after.isdigit() else None
    page, next_after = reports.list_memberships(
        session, status=status, currency=currency, after_id=after_id
    )
    query: dict[str, Any] = {"status": status or "", "currency": currency or ""}
    return render_template(
        "finance/memberships.html",
        stats=reports.membership_stats(session, area.zone(), utcnow()),
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
        since, until = bounds(day_arg("since"), day_arg("until"))
    except reports.ReportError as exc:
        return bad_filter("finance/campaigns.html", str(exc), lines=[], form=form)
    lines = reports.campaign_report(db_session(), since, until)
    groups = reports.campaign_groups(lines)
    funnel = appeal_funnel(db_session(), since, until)
    return render_template(
        "finance/campaigns.html", lines=lines, groups=groups, form=form, funnel=funnel
    )
