"""Running outbox jobs: claim the next due job, run it by its kind, mark it
done and commit; on failure roll back and record it (backoff, dead after the
last attempt, the error kept without personal data). The worker interleaves
this with webhook events; `donations receipts annual` runs its own kind.

The edge of the outbox (like webhooks.worker): it owns each job's
transaction. A message is sent inside it, just before the commit, so a crash
between the two can send a message twice (with the same Message-ID) but
never loses one.
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import Database
from app.outbox.mail import MailSettings
from app.outbox.queue import claim_job, mark_done, record_job_failure

log = logging.getLogger(__name__)


class NotReady(Exception):
    """What the job needs is not known yet (e.g. the donor behind a charge):
    retried later like any failure. Messages carry ids only."""


class JobError(Exception):
    """The job cannot be done, now or later (retrying cannot help): dead at once."""


@dataclass(frozen=True)
class JobContext:
    """What a job may use besides its session: the settings, where mail goes,
    and the Stripe look-ups (None where there are none)."""

    settings: Mapping[str, Any]
    mail: MailSettings
    stripe: Any = None


# A job's work: returns None, or a short note when it chose to do nothing.
Runner = Callable[[Session, Mapping[str, Any], JobContext], "str | None"]


@dataclass(frozen=True)
class JobPolicy:
    max_attempts: int = 8
    base_delay_seconds: float = 60
    max_delay_seconds: float = 3600

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> JobPolicy:
        return cls(
            max_attempts=max(1, int(settings.get("OUTBOX_MAX_ATTEMPTS") or 8)),
            base_delay_seconds=float(settings.get("OUTBOX_RETRY_BASE_SECONDS") or 60),
            max_delay_seconds=float(settings.get("OUTBOX_RETRY_MAX_SECONDS") or 3600),
        )


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one claimed job: processed, failed (retried later),
    dead, or raced (another worker recorded this attempt first)."""

    key: str
    kind: str
    status: str
    error: str | None = None


def describe_job_error(exc: BaseException) -> str:
    """The error kept on the job: no personal data. SMTP errors keep their
    code only (a server's text may quote the address), database errors the
    driver's first line; our own errors carry ids only; anything else its type."""
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{name}: SMTP {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({str(code) for code, _text in exc.recipients.values()})
        return f"{name}: SMTP {', '.join(codes)}"
    if isinstance(exc, OSError):
        return f"{name}: errno {exc.errno}" if exc.errno else name
    if isinstance(exc, StatementError):
        first_line = next(iter(str(exc.orig).splitlines()), "") if exc.orig else ""
        return f"{name}: {type(exc.orig).__name__}: {first_line}"
    if isinstance(exc, NotReady | JobError):
        return f"{name}: {exc}"
    return name


def run_next_job(
    database: Database,
    runners: Mapping[str, Runner],
    context: JobContext,
    policy: JobPolicy,
    *,
    key: str | None = None,
    kinds: Sequence[str] | None = None,
) -> JobOutcome | None:
    """Claim the next due job (or the one with `key`; only of `kinds` when
    given), run it, commit. None when nothing is due."""
    session = database.session()
    claimed: tuple[int, str, str, int] | None = None
    try:
        with session.begin():
            job = claim_job(session, utcnow(), key=key, kinds=kinds)
            if job is None:
                return None
            claimed = (job.id, job.key, job.kind, job.attempts)
            # Write first: on SQLite this takes the write lock now, so the
            # commit after the send cannot meet a newer snapshot and fail.
            job.last_attempt_at = utcnow()
            session.flush()
            runner = runners.get(job.kind)
            if runner is None:
                raise JobError(f"no runner for jobs of kind {job.kind}")
            note = runner(session, json.loads(job.payload), context)
            mark_done(session, job, utcnow(), note)
        log.info("job %s: processed%s", claimed[1], f" ({note})" if note else "")
        return JobOutcome(claimed[1], claimed[2], "processed")
    except Exception as exc:
        if claimed is None:
            raise  # the claim itself failed: the database, not the job
        job_id, job_key, job_kind, seen_attempts = claimed
        error = describe_job_error(exc)
        with session.begin():
            status = record_job_failure(
                session,
                job_id,
                seen_attempts=seen_attempts,
                error=error,
                now=utcnow(),
                max_attempts=policy.max_attempts,
                base_delay_seconds=policy.base_delay_seconds,
                max_delay_seconds=policy.max_delay_seconds,
                dead_at_once=isinstance(exc, JobError),
            )
        log.warning("job %s: %s after %s", job_key, status or "raced", type(exc).__name__)
        return JobOutcome(job_key, job_kind, status or "raced", error)
    finally:
        session.close()


def drain_jobs(
    database: Database,
    runners: Mapping[str, Runner],
    context: JobContext,
    policy: JobPolicy,
    *,
    kinds: Sequence[str] | None = None,
) -> list[JobOutcome]:
    """Run every due job until none is left (a failed job waits its backoff)."""
    outcomes: list[JobOutcome] = []
    while (outcome := run_next_job(database, runners, context, policy, kinds=kinds)) is not None:
        outcomes.append(outcome)
    return outcomes
