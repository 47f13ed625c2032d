"""The finance area's appeal pages under /ledger/appeals: the appeals with
their embed snippets and funnel (viewer and up), the tracked-link builder,
and for admins the editor (a TOML definition stored as an override, audited)
and its revert.

Web edge: reads through app.appeals' core; the only writes are overrides and
audit entries, committed here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from app.appeals.definitions import (
    SLUG,
    AppealError,
    current_appeals,
    parse_source,
    to_toml,
)
from app.appeals.forms import AppealSourceForm, LinkForm
from app.appeals.funnel import appeal_funnel
from app.appeals.links import embed_snippets, tracked_url
from app.appeals.models import AppealOverride
from app.appeals.views import forget_appeals, rules
from app.clock import utcnow
from app.extensions import db_session
from app.finance import reports
from app.finance.area import bad_filter, bounds, day_arg, staff_area
from app.money import MoneyError, parse_plain
from app.staff.gate import audit, current_staff, staff_required

bp = Blueprint("appeals_admin", __name__, url_prefix="/ledger/appeals")
staff_area(bp, "viewer")

NEW_APPEAL = """active = true
starts_on = ""
ends_on = ""
default_frequency = "month"

[[variants]]
key = "a"

[variants.texts.en]
headline = "Support us!"
body = "Independent journalism is paid for by readers like you."
banner = "Support us!"
"""


def _appeals() -> dict[str, Any]:
    return current_appeals(db_session(), current_app.extensions["donations.appeals"], rules())


@bp.get("/")
def appeal_list() -> Any:
    form = {"since": request.args.get("since", ""), "until": request.args.get("until", "")}
    try:
        since, until = bounds(day_arg("since"), day_arg("until"))
    except reports.ReportError as exc:
        return bad_filter("appeals/admin_list.html", str(exc), appeals={}, funnel=None, form=form)
    base = current_app.config["PUBLIC_BASE_URL"]
    appeals = _appeals()
    return render_template(
        "appeals/admin_list.html",
        appeals=appeals,
        today=utcnow().date(),
        snippets={slug: embed_snippets(base, slug, "ARTICLE-ID-OR-URL") for slug in appeals},
        funnel=appeal_funnel(db_session(), since, until),
        form=form,
        origins=current_app.config.get("EMBED_ALLOWED_ORIGINS") or [],
        can_edit=getattr(current_staff(), "role", None) == "admin",
    )


@bp.get("/links")
def link_builder() -> Any:
    config = current_app.config
    form = LinkForm(request.args, meta={"csrf": False})
    form.currency.choices = [("", "(the form's default)")] + [
        (code, code.upper()) for code in config["CURRENCIES"]
    ]
    url = None
    status = 200
    if request.args:
        if form.validate():
            amount = None
            if form.amount.data:
                if not form.currency.data:
                    form.amount.errors = ["Choose the currency of the amount."]
                else:
                    try:
                        amount = parse_plain(form.amount.data.strip(), form.currency.data)
                    except MoneyError as exc:
                        form.amount.errors = [str(exc)]
            if not form.amount.errors:
                url = tracked_url(
                    config["PUBLIC_BASE_URL"],
                    campaign=form.campaign.data.strip(),
                    source=form.source.data.strip(),
                    medium=(form.medium.data or "").strip(),
                    content=form.content.data or "",
                    term=form.term.data or "",
                    amount_minor=amount,
                    currency=form.currency.data or None,
                    frequency=form.frequency.data or None,
                )
        if url is None:
            status = 400
    return render_template(
        "appeals/admin_links.html", form=form, url=url, appeals=_appeals()
    ), status


def _editor(
    slug: str | None, form: AppealSourceForm, status: int = 200, error: str | None = None
) -> Any:
    return render_template("appeals/admin_edit.html", slug=slug, form=form, error=error), status


@bp.route("/edit", methods=["GET", "POST"])
@bp.route("/<slug>/edit", methods=["GET", "POST"])
@staff_required("admin")
def edit(slug: str | None = None) -> Any:
    if slug is not None and not SLUG.fullmatch(slug):
        abort(404)
    appeals = _appeals()
    form = AppealSourceForm()
    if request.method == "GET":
        if slug is not None:
            found = appeals.get(slug)
            if found is None:
                abort(404)
            row = db_session().get(AppealOverride, slug)
            form.slug.data = slug
            form.source.data = row.source if row is not None else to_toml(found.raw)
        else:
            form.source.data = NEW_APPEAL
        return _editor(slug, form)
    if not form.validate():
        return _editor(slug, form, 400)
    chosen = form.slug.data.strip()
    if slug is not None and chosen != slug:
        form.slug.errors = ["The slug of an existing appeal cannot change."]
        return _editor(slug, form, 400)
    if slug is None and chosen in appeals:
        form.slug.errors = ["An appeal with this slug exists; edit it instead."]
        return _editor(slug, form, 400)
    source = form.source.data.replace("\r\n", "\n")
    try:
        parse_source(chosen, source, rules())
    except AppealError as exc:
        return _editor(slug, form, 400, error=str(exc))
    session = db_session()
    row = session.get(AppealOverride, chosen)
    me = current_staff()
    if row is None:
        session.add(AppealOverride(slug=chosen, source=source, updated_by=me.id if me else None))
    else:
        row.source, row.updated_by = source, me.id if me else None
    audit("appeal_saved", {"slug": chosen})
    session.commit()
    forget_appeals()
    flash(f"Appeal {chosen} saved. Embeds show it once their cached copy expires.")
    return redirect(url_for("appeals_admin.appeal_list"), 303)


@bp.post("/<slug>/revert")
@staff_required("admin")
def revert(slug: str) -> Any:
    session = db_session()
    row = session.get(AppealOverride, slug) if SLUG.fullmatch(slug) else None
    if row is None:
        abort(404)
    session.delete(row)
    audit("appeal_reverted", {"slug": slug})
    session.commit()
    forget_appeals()
    flash(f"Appeal {slug}: the admin's version is removed; config/appeals.toml applies.")
    return redirect(url_for("appeals_admin.appeal_list"), 303)
