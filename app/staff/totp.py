"""The TOTP second factor: secrets, provisioning URIs, code checks (a code is
never accepted twice), enrolment and reset; secrets encrypted at rest.

Secrets are stored as "fernet:" + a MultiFernet token under DATA_ENCRYPTION_KEY
(newest key first encrypts; older keys still decrypt, and a secret is
re-encrypted under the newest key at each use or by `donations staff
rotate-secrets`). A stored value without the prefix is a plain secret from
before migration 0011: it still works once and is encrypted at that use (or
by the command). Never stores a plain secret, never stores, logs or audits a
code. May flush, never commits.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.staff.audit import record_audit
from app.staff.models import Staff
from app.staff.sessions import revoke_sessions

SEALED = "fernet:"  # marks an encrypted secret (migration 0011: plain ones have none)


def make_cipher(keys: Sequence[str]) -> MultiFernet:
    """DATA_ENCRYPTION_KEY's keys, newest first."""
    if not keys:
        raise ValueError("at least one data encryption key is needed")
    return MultiFernet([Fernet(key) for key in keys])


def seal_secret(cipher: MultiFernet, secret: str) -> str:
    return SEALED + cipher.encrypt(secret.encode()).decode()


def open_secret(cipher: MultiFernet, stored: str | None) -> str | None:
    """The plain secret of a stored value; None when no key opens it."""
    if stored is None:
        return None
    if not stored.startswith(SEALED):
        return stored  # plain, from before encryption: sealed at its next use
    try:
        return cipher.decrypt(stored.removeprefix(SEALED).encode()).decode()
    except InvalidToken:
        return None


def reseal_secret(cipher: MultiFernet, stored: str | None) -> str | None:
    """The stored value under the newest key (a plain one encrypted)."""
    secret = open_secret(cipher, stored)
    return None if secret is None else seal_secret(cipher, secret)


def reseal_totp_secrets(session: Session, cipher: MultiFernet) -> int:
    """Every stored secret under the newest key; the number of accounts changed.
    A secret no key opens is left as it is (an admin resets that account)."""
    changed = 0
    accounts = session.scalars(
        select(Staff).where(
            or_(Staff.totp_secret.is_not(None), Staff.totp_pending_secret.is_not(None))
        )
    )
    for staff in accounts:
        secret = reseal_secret(cipher, staff.totp_secret)
        pending = reseal_secret(cipher, staff.totp_pending_secret)
        if secret is not None or pending is not None:
            staff.totp_secret = secret or staff.totp_secret
            staff.totp_pending_secret = pending or staff.totp_pending_secret
            changed += 1
    session.flush()
    return changed


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


def verify_totp(staff: Staff, code: str, cipher: MultiFernet) -> bool:
    """Whether `code` is good now (and never used before); a good code also
    re-encrypts the secret under the newest key."""
    secret = open_secret(cipher, staff.totp_secret)
    if secret is None:
        return False
    step = _matching_step(secret, code, staff.totp_last_step)
    if step is None:
        return False
    staff.totp_last_step = step
    staff.totp_secret = seal_secret(cipher, secret)
    return True


def start_totp_enrolment(staff: Staff, cipher: MultiFernet) -> str:
    """A fresh secret (plain, to show once), kept aside encrypted until a code
    proves the app has it."""
    secret = open_secret(cipher, staff.totp_pending_secret)
    if secret is None:
        secret = new_totp_secret()
    staff.totp_pending_secret = seal_secret(cipher, secret)
    return secret


def confirm_totp_enrolment(
    session: Session, staff: Staff, code: str, cipher: MultiFernet, *, ip: str | None = None
) -> bool:
    secret = open_secret(cipher, staff.totp_pending_secret)
    if secret is None:
        return False
    step = _matching_step(secret, code, None)
    if step is None:
        return False
    staff.totp_secret = seal_secret(cipher, secret)
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
