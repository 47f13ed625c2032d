"""Staff accounts: email checks, lookups, creation and the admin changes
(password, role, disabling, two-factor requirement), each audited.

Never deletes an account (disables it) and never commits.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.donors import normalise_email
from app.staff.audit import record_audit
from app.staff.models import Staff, StaffError, StaffSession
from app.staff.passwords import check_password_strength
from app.staff.roles import check_role
from app.staff.sessions import revoke_sessions


def check_email(email: str) -> str:
    """A valid address, normalised (trimmed, lower case)."""
    address = normalise_email(email)
    try:
        # Staff addresses may be internal (corp.internal, newsroom.test): only the form counts.
        validate_email(
            address, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise StaffError("that is not a valid email address") from exc
    return address


def find_staff(session: Session, email: str) -> Staff | None:
    return session.scalar(select(Staff).where(Staff.email == normalise_email(email)))


def list_staff(session: Session) -> list[Staff]:
    return list(session.scalars(select(Staff).order_by(Staff.email)))


def create_staff(
    session: Session,
    *,
    email: str,
    role: str,
    password: str,
    hasher: PasswordHasher,
    actor: Staff | None = None,
    ip: str | None = None,
) -> Staff:
    address = check_email(email)
    check_role(role)
    check_password_strength(password)
    if find_staff(session, address) is not None:
        raise StaffError("a staff account with that email exists already")
    staff = Staff(
        email=address,
        role=role,
        password_hash=hasher.hash(password),
        password_changed_at=utcnow(),
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(staff)
    except IntegrityError as exc:
        raise StaffError("a staff account with that email exists already") from exc
    record_audit(
        session,
        actor=actor,
        action="staff_created",
        detail={"staff_id": staff.id, "email": address, "role": role},
        ip=ip,
    )
    return staff


def set_password(
    session: Session,
    staff: Staff,
    password: str,
    *,
    hasher: PasswordHasher,
    actor: Staff | None,
    action: str = "password_reset",
    ip: str | None = None,
    keep: StaffSession | None = None,
) -> None:
    """A new password ends every session of the account (but `keep`)."""
    check_password_strength(password)
    staff.password_hash = hasher.hash(password)
    staff.password_changed_at = utcnow()
    session.flush()
    revoke_sessions(session, staff, keep=keep)
    record_audit(session, actor=actor, action=action, detail={"staff_id": staff.id}, ip=ip)


def disable_staff(
    session: Session, staff: Staff, *, actor: Staff | None, ip: str | None = None
) -> None:
    if staff.disabled_at is None:
        staff.disabled_at = utcnow()
        session.flush()
    revoke_sessions(session, staff)
    record_audit(
        session, actor=actor, action="staff_disabled", detail={"staff_id": staff.id}, ip=ip
    )


def change_role(
    session: Session, staff: Staff, role: str, *, actor: Staff | None, ip: str | None = None
) -> None:
    check_role(role)
    before, staff.role = staff.role, role
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="staff_role_changed",
        detail={"staff_id": staff.id, "from": before, "to": role},
        ip=ip,
    )


def require_totp(
    session: Session, staff: Staff, required: bool, *, actor: Staff | None, ip: str | None = None
) -> None:
    staff.totp_required = required
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="staff_2fa_required" if required else "staff_2fa_optional",
        detail={"staff_id": staff.id},
        ip=ip,
    )


def needs_totp_enrolment(staff: Staff, *, required_for_everyone: bool) -> bool:
    return not staff.has_totp and (required_for_everyone or staff.totp_required)
