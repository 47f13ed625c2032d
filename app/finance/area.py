"""What every staff page under /ledger shares: `staff_area` (the gate at a
least role, one database snapshot per page, and the template helpers: money in
the staff member's locale, times in the reporting zone, donor labels as this
staff member may see them), bounds of reporting-zone days, and CSV responses.

Web side only; reads only (no commits beyond what the gate does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context
from flask_babel import get_locale
from sqlalchemy.orm import Session

from app.extensions import db_session
from app.finance import reports
from app.money import format_money
from app.staff import can
from app.staff.gate import current_staff, protect_blueprint


def staff_area(blueprint: Blueprint, min_role: str = "viewer") -> None:
    """Put `blueprint` behind the staff gate (at least `min_role`) with one
    snapshot per page and the finance templates' helpers."""
    protect_blueprint(blueprint, min_role)
    blueprint.before_request(one_snapshot_per_page)
    blueprint.context_processor(template_helpers)


def one_snapshot_per_page() -> None:
    """A page reads the daily totals and the live rows in several statements:
    on PostgreSQL they all read one snapshot (REPEATABLE READ), so a posting
    committed meanwhile cannot put a page's numbers out of step. GETs only:
    a replay (POST) writes."""
    session = db_session()
    if request.method == "GET" and session.get_bind().dialect.name == "postgresql":
        session.commit()  # end what the login gate read; nothing is pending here
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def zone() -> ZoneInfo:
    return reports.reporting_zone(current_app.config.get("LEDGER_REPORTING_TZ"))


def locale() -> str:
    return str(get_locale() or "en")


def shows_contacts() -> bool:
    return can(current_staff(), "read_contacts")


def money(minor: int | None, currency: str) -> str:
    return "" if minor is None else format_money(minor, currency, locale())


def donor_label(donor_id: int | None, name: str | None, email: str | None) -> str:
    """Who a row belongs to, as this staff member may see it: a viewer gets
    the name or "Donor #id", never the email."""
    if donor_id is None and not (name or email):
        return ""
    if shows_contacts():
        if name and email:
            return f"{name} <{email}>"
        return name or email or f"Donor #{donor_id}"
    return name or (f"Donor #{donor_id}" if donor_id is not None else "Donor")


def percent(basis_points: int | None) -> str:
    if basis_points is None:
        return "-"
    return f"{basis_points // 100}.{basis_points % 100:02d} %"


def template_helpers() -> dict[str, Any]:
    here = zone()
    me = current_staff()
    return {
        "money": money,
        "when": lambda moment: reports.local_time(moment, here),
        "donor_label": donor_label,
        "zone_name": here.key,
        "show_contacts": can(me, "read_contacts"),
        "can_export": can(me, "export"),
        "can_replay": can(me, "replay"),
        "percent": percent,
    }


def day_arg(name: str) -> date | None:
    return reports.parse_day(request.args.get(name))


def bounds(since: date | None, until: date | None) -> tuple[Any, Any]:
    """Days in the reporting zone as UTC instants; the end after the start."""
    here = zone()
    if since and until and until <= since:
        raise reports.ReportError("the end date must be after the start date")
    return (
        reports.day_start(since, here) if since else None,
        reports.day_start(until, here) if until else None,
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


def csv_response(chunks: Iterable[bytes], session: Session, filename: str) -> Response:
    return Response(
        stream_with_context(_csv_chunks(chunks, session)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def bad_filter(template: str, message: str, **page: Any) -> tuple[str, int]:
    return render_template(template, error=message, **page), 400
