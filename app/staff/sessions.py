"""Server-side login sessions: start, find (with idle and absolute timeouts),
end, and revoke all of an account's sessions.

The cookie carries the token, the database only its hash. May flush, never commits.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.staff.models import Staff, StaffSession

TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    session: Session, staff: Staff, *, stage: str = "full"
) -> tuple[StaffSession, str]:
    """A new session row and its token (the token goes into the cookie only)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = StaffSession(
        token_hash=_token_hash(token),
        staff_id=staff.id,
        stage=stage,
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    if stage == "full":
        staff.last_login_at = now
    session.flush()
    return row, token


def find_session(
    session: Session,
    token: str | None,
    *,
    idle: timedelta,
    absolute: timedelta,
    stage: str = "full",
) -> StaffSession | None:
    """The live session for this token, touched; None when there is none, it was
    revoked, it timed out (then it is revoked now) or the account is disabled."""
    if not token or len(token) > 100:
        return None
    row = session.scalar(select(StaffSession).where(StaffSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.stage != stage:
        return None
    now = utcnow()
    if now - row.last_seen_at > idle or now - row.created_at > absolute or not row.staff.active:
        row.revoked_at = now
        session.flush()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.flush()
    return row


def end_session(session: Session, row: StaffSession) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


def revoke_sessions(session: Session, staff: Staff, *, keep: StaffSession | None = None) -> int:
    """End every live session of this staff member (but `keep`)."""
    statement = update(StaffSession).where(
        StaffSession.staff_id == staff.id, StaffSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(StaffSession.id != keep.id)
    session.flush()
    result = session.execute(
        statement.values(revoked_at=utcnow()), execution_options={"synchronize_session": False}
    )
    for instance in list(session.identity_map.values()):
        if isinstance(instance, StaffSession):
            session.expire(instance)
    return int(getattr(result, "rowcount", 0) or 0)
