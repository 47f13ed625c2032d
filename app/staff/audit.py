"""The append-only audit log's one entry point, `record_audit`.

Never records a secret: detail keys naming a password, code, secret or token
are refused. May flush, never commits.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.staff.models import AuditEntry, Staff

# Keys that can never appear in an audit entry's detail.
SECRET_WORDS = ("password", "passwd", "secret", "code", "otp", "token")


def record_audit(
    session: Session,
    *,
    actor: Staff | None,
    action: str,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Append one audit entry. `detail` must be JSON-able and hold no secrets:
    a key naming a password, code, secret or token is refused outright."""
    detail = dict(detail or {})
    for key in detail:
        if any(word in key.lower() for word in SECRET_WORDS):
            raise ValueError(f"audit detail key {key!r} looks like a secret")
    entry = AuditEntry(
        occurred_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
        action=action[:40],
        ip=ip[:64] if ip else None,
        detail=json.dumps(detail, sort_keys=True, default=str),
    )
    session.add(entry)
    session.flush()
    return entry
