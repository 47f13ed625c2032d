"""Admin pages: staff accounts under /ledger/staff (list, create, change role,
disable, reset password, require or reset two-factor) and the audit log under
/ledger/audit.

Admins only (the whole blueprint is protected); each change commits once and
is audited. Never shows a password hash or a TOTP secret.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.extensions import db_session
from app.staff import (
    AuditEntry,
    Staff,
    StaffError,
    change_role,
    create_staff,
    disable_staff,
    list_staff,
    require_totp,
    reset_totp,
    set_password,
    throttle_state,
)
from app.staff.forms import (
    ConfirmForm,
    CreateStaffForm,
    ResetPasswordForm,
    RoleForm,
    TwoFactorRequiredForm,
)
from app.staff.gate import client_address, current_staff, password_hasher, protect_blueprint

bp = Blueprint("staff", __name__, url_prefix="/ledger")
protect_blueprint(bp, "admin")

AUDIT_PAGE_SIZE = 50


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    zone = ZoneInfo(str(current_app.config.get("LEDGER_REPORTING_TZ") or "UTC"))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _staff_or_404(staff_id: int) -> Staff:
    staff = db_session().get(Staff, staff_id)
    if staff is None:
        abort(404)
    return staff


@bp.route("/staff", methods=["GET", "POST"])
def staff_list() -> Any:
    form = CreateStaffForm()
    status = 200
    if request.method == "POST":
        if form.validate():
            db = db_session()
            try:
                created = create_staff(
                    db,
                    email=form.email.data or "",
                    role=form.role.data or "viewer",
                    password=form.password.data or "",
                    hasher=password_hasher(),
                    actor=current_staff(),
                    ip=client_address(),
                )
            except StaffError as exc:
                db.rollback()
                field = form.password if "password" in str(exc) else form.email
                field.errors = [str(exc).capitalize() + "."]
                status = 400
            else:
                db.commit()
                flash(f"Account {created.email} created as {created.role}.")
                return redirect(url_for("staff.staff_detail", staff_id=created.id), 303)
        else:
            status = 400
    members = list_staff(db_session())
    return render_template("staff/list.html", form=form, members=members, when=_when), status


def _detail_page(staff: Staff, status: int = 200, **forms: Any) -> Any:
    db = db_session()
    throttle = throttle_state(db, email=staff.email)
    page: dict[str, Any] = {
        "member": staff,
        "when": _when,
        "throttle": throttle,
        "role_form": forms.get("role_form") or RoleForm(role=staff.role),
        "password_form": forms.get("password_form") or ResetPasswordForm(formdata=None),
        "disable_form": forms.get("disable_form") or ConfirmForm(formdata=None),
        "reset_totp_form": forms.get("reset_totp_form") or ConfirmForm(formdata=None),
        "required_form": TwoFactorRequiredForm(formdata=None, required=staff.totp_required),
        "is_self": current_staff() is staff,
    }
    return render_template("staff/detail.html", **page), status


@bp.route("/staff/<int:staff_id>")
def staff_detail(staff_id: int) -> Any:
    return _detail_page(_staff_or_404(staff_id))


@bp.route("/staff/<int:staff_id>/role", methods=["POST"])
def staff_role(staff_id: int) -> Any:
    staff = _staff_or_404(staff_id)
    form = RoleForm()
    if not form.validate():
        return _detail_page(staff, 400, role_form=form)
    if staff is current_staff() and form.role.data != "admin":
        form.role.errors = ["You cannot take admin away from yourself."]
        return _detail_page(staff, 400, role_form=form)
    db = db_session()
    change_role(db, staff, form.role.data or "viewer", actor=current_staff(), ip=client_address())
    db.commit()
    flash(f"{staff.email} is now {staff.role}.")
    return redirect(url_for("staff.staff_detail", staff_id=staff.id), 303)


@bp.route("/staff/<int:staff_id>/password", methods=["POST"])
def staff_password(staff_id: int) -> Any:
    staff = _staff_or_404(staff_id)
    form = ResetPasswordForm()
    if not form.validate():
        return _detail_page(staff, 400, password_form=form)
    db = db_session()
    try:
        set_password(
            db,
            staff,
            form.password.data or "",
            hasher=password_hasher(),
            actor=current_staff(),
            action="password_reset",
            ip=client_address(),
        )
    except StaffError as exc:
        db.rollback()
        form.password.errors = [str(exc).capitalize() + "."]
        return _detail_page(staff, 400, password_form=form)
    db.commit()
    flash(f"The password of {staff.email} was reset; their sessions were signed out.")
    if staff is current_staff():
        return redirect(url_for("auth.login"), 303)
    return redirect(url_for("staff.staff_detail", staff_id=staff.id), 303)


@bp.route("/staff/<int:staff_id>/disable", methods=["POST"])
def staff_disable(staff_id: int) -> Any:
    staff = _staff_or_404(staff_id)
    form = ConfirmForm()
    if staff is current_staff():
        form.confirm.errors = ["You cannot disable your own account."]
        return _detail_page(staff, 400, disable_form=form)
    if not form.validate():
        return _detail_page(staff, 400, disable_form=form)
    db = db_session()
    disable_staff(db, staff, actor=current_staff(), ip=client_address())
    db.commit()
    flash(f"{staff.email} was disabled and signed out everywhere.")
    return redirect(url_for("staff.staff_detail", staff_id=staff.id), 303)


@bp.route("/staff/<int:staff_id>/two-factor", methods=["POST"])
def staff_two_factor_required(staff_id: int) -> Any:
    staff = _staff_or_404(staff_id)
    form = TwoFactorRequiredForm()
    if not form.validate():
        return _detail_page(staff, 400)
    db = db_session()
    require_totp(db, staff, bool(form.required.data), actor=current_staff(), ip=client_address())
    db.commit()
    flash(
        f"Two-factor is now {'required' if staff.totp_required else 'optional'} for {staff.email}."
    )
    return redirect(url_for("staff.staff_detail", staff_id=staff.id), 303)


@bp.route("/staff/<int:staff_id>/two-factor/reset", methods=["POST"])
def staff_two_factor_reset(staff_id: int) -> Any:
    staff = _staff_or_404(staff_id)
    form = ConfirmForm()
    if not form.validate():
        return _detail_page(staff, 400, reset_totp_form=form)
    db = db_session()
    reset_totp(db, staff, actor=current_staff(), ip=client_address())
    db.commit()
    flash(f"Two-factor was removed from {staff.email}; they were signed out.")
    if staff is current_staff():
        return redirect(url_for("auth.login"), 303)
    return redirect(url_for("staff.staff_detail", staff_id=staff.id), 303)


@bp.route("/audit")
def audit_log() -> Any:
    """Newest first, 50 a page; `?action=` filters, `?before=<id>` pages on."""
    db = db_session()
    action = (request.args.get("action") or "").strip()[:40]
    before = request.args.get("before", type=int)
    query = (
        select(AuditEntry)
        .options(joinedload(AuditEntry.actor))
        .order_by(AuditEntry.id.desc())
        .limit(AUDIT_PAGE_SIZE + 1)
    )
    if action:
        query = query.where(AuditEntry.action == action)
    if before:
        query = query.where(AuditEntry.id < before)
    entries = list(db.scalars(query))
    more = len(entries) > AUDIT_PAGE_SIZE
    entries = entries[:AUDIT_PAGE_SIZE]
    actions = list(db.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    rows = [
        {
            "id": entry.id,
            "when": _when(entry.occurred_at),
            "action": entry.action,
            "actor": entry.actor.email if entry.actor is not None else "",
            "ip": entry.ip or "",
            "detail": ", ".join(
                f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
                for key, value in entry.details.items()
            ),
        }
        for entry in entries
    ]
    next_url = (
        url_for("staff.audit_log", action=action or None, before=entries[-1].id)
        if more and entries
        else None
    )
    return render_template(
        "staff/audit.html", rows=rows, actions=actions, action=action, next_url=next_url
    )
