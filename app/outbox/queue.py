"""The outbox's queue: `enqueue` (once per key, ON CONFLICT DO NOTHING, in the
caller's transaction), claiming the next due job (FOR UPDATE SKIP LOCKED on
PostgreSQL), recording outcomes with exponential backoff, and replay.

No Flask, no `stripe`; never commits (the runner and the CLI do).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.clock import backoff, utcnow
from app.db import insert_missing
from app.outbox.models import DUE_STATUSES, OutboxJob

ERROR_MAX_CHARS = 2000


def enqueue(
    session: Session,
    key: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    due_at: datetime | None = None,
) -> bool:
    """Queue a job unless its key is queued already (also when another
    transaction inserts it at the same moment). True when this call queued it.
    `payload` holds ids only: the runner reads the rest when it runs."""
    now = utcnow()
    values = {
        "key": key,
        "kind": kind,
        "payload": json.dumps(dict(payload), sort_keys=True),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due_at or now,
        "created_at": now,
    }
    # RETURNING, not rowcount: psycopg's rowcount here is not the inserted rows.
    result = insert_missing(session, OutboxJob, values, index=["key"], returning="id")
    return result.scalar() is not None


def claim_job(
    session: Session,
    now: datetime,
    *,
    key: str | None = None,
    kinds: Sequence[str] | None = None,
) -> OutboxJob | None:
    """Lock and return the next due job (pending or failed, its time reached,
    oldest first), or that one job when `key` is given. Rows other workers
    hold are skipped on PostgreSQL; SQLite has one worker."""
    query = select(OutboxJob).where(
        OutboxJob.status.in_(DUE_STATUSES), OutboxJob.next_attempt_at <= now
    )
    if key is not None:
        query = query.where(OutboxJob.key == key)
    if kinds is not None:
        query = query.where(OutboxJob.kind.in_(list(kinds)))
    query = (
        query.order_by(OutboxJob.next_attempt_at, OutboxJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).first()


def mark_done(session: Session, job: OutboxJob, now: datetime, note: str | None = None) -> None:
    job.status = "done"
    job.attempts += 1
    job.last_attempt_at = now
    job.done_at = now
    job.next_attempt_at = None
    job.last_error = None
    job.note = note[:255] if note else None
    session.flush()


def record_job_failure(
    session: Session,
    job_id: int,
    *,
    seen_attempts: int,
    error: str,
    now: datetime,
    max_attempts: int,
    base_delay_seconds: float,
    max_delay_seconds: float,
    dead_at_once: bool = False,
) -> str | None:
    """Count a failed attempt of the job claimed with `seen_attempts`: failed
    (retried after a backoff) or dead after the last attempt. None when
    someone else recorded an outcome for that attempt meanwhile."""
    attempts = seen_attempts + 1
    dead = dead_at_once or attempts >= max_attempts
    result = session.execute(
        update(OutboxJob)
        .where(
            OutboxJob.id == job_id,
            OutboxJob.status.in_(DUE_STATUSES),
            OutboxJob.attempts == seen_attempts,
        )
        .values(
            status="dead" if dead else "failed",
            attempts=attempts,
            last_error=error[:ERROR_MAX_CHARS],
            last_attempt_at=now,
            next_attempt_at=(
                None if dead else now + backoff(attempts, base_delay_seconds, max_delay_seconds)
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    return "dead" if dead else "failed"


def job_status(session: Session, key: str) -> str | None:
    """The status of the job with this key, None when there is none."""
    found: str | None = session.scalar(select(OutboxJob.status).where(OutboxJob.key == key))
    return found


def find_jobs(session: Session, keys: Sequence[str]) -> list[OutboxJob]:
    if not keys:
        return []
    return list(session.scalars(select(OutboxJob).where(OutboxJob.key.in_(list(keys)))))


def list_failed_jobs(session: Session) -> list[OutboxJob]:
    """Jobs that failed (and will be retried) or are dead, oldest first."""
    query = (
        select(OutboxJob)
        .where(OutboxJob.status.in_(("failed", "dead")))
        .order_by(OutboxJob.created_at, OutboxJob.id)
    )
    return list(session.scalars(query))


def reset_jobs_for_replay(session: Session, jobs: Sequence[OutboxJob], now: datetime) -> None:
    """Make jobs due again now with a fresh retry budget. A done job is not
    run again (its message went out): replay is for failed and dead ones."""
    for job in jobs:
        if job.status == "done":
            raise ValueError(f"{job.key} is done and is not run again")
        job.status = "pending"
        job.attempts = 0
        job.next_attempt_at = now
    session.flush()
