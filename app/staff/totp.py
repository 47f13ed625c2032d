"""The TOTP second factor: secrets, provisioning URIs, code checks (a code is
never accepted twice), enrolment and reset.

Never stores, logs or audits a code. May flush, never commits.
"""

from __future__ import annotations

import hmac

import pyotp
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.staff.audit import record_audit
from app.staff.models import Staff
from app.staff.sessions import revoke_sessions


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def _matching_step(secret: str, code: str, after: int | None) -> int | None:
    """The time step (now, or one either side) whose code this is, if it is
    later than `after`: a code accepted once is never accepted again."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(utcnow())
    for step in (now_step - 1, now_step, now_step + 1):  # valid_window=1
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(staff: Staff, code: str) -> bool:
    if staff.totp_secret is None:
        return False
    step = _matching_step(staff.totp_secret, code, staff.totp_last_step)
    if step is None:
        return False
    staff.totp_last_step = step
    return True


def start_totp_enrolment(staff: Staff) -> str:
    """A fresh secret, kept aside until a code proves the app has it."""
    if staff.totp_pending_secret is None:
        staff.totp_pending_secret = new_totp_secret()
    return staff.totp_pending_secret


def confirm_totp_enrolment(
    session: Session, staff: Staff, code: str, *, ip: str | None = None
) -> bool:
    secret = staff.totp_pending_secret
    if secret is None:
        return False
    step = _matching_step(secret, code, None)
    if step is None:
        return False
    staff.totp_secret = secret
    staff.totp_pending_secret = None
    staff.totp_enrolled_at = utcnow()
    staff.totp_last_step = step
    session.flush()
    record_audit(session, actor=staff, action="totp_enrolled", detail={"staff_id": staff.id}, ip=ip)
    return True


def reset_totp(
    session: Session, staff: Staff, *, actor: Staff | None, ip: str | None = None
) -> None:
    """A lost phone: the account enrols again at its next login (its sessions end)."""
    staff.totp_secret = None
    staff.totp_pending_secret = None
    staff.totp_enrolled_at = None
    staff.totp_last_step = None
    session.flush()
    revoke_sessions(session, staff)
    record_audit(session, actor=actor, action="totp_reset", detail={"staff_id": staff.id}, ip=ip)
