"""The worker: claims stored events one at a time and applies each to the
ledger in one transaction, retrying failures with exponential backoff and
marking an event dead after the last attempt (or at once when Stripe says the
object it needs does not exist). Between events it runs the outbox's due jobs
(receipts, notices: app.outbox.runner, the kinds in JOB_RUNNERS) when given
`jobs`.

Knows no Flask; the CLI hands it the database, the payments provider and the
retry policy. Each event's transaction is committed here, the edge.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import StatementError

from app import receipts
from app.clock import utcnow
from app.db import Database
from app.outbox.mail import MailSettings
from app.outbox.runner import JobContext, JobOutcome, JobPolicy, Runner, run_next_job
from app.payments import PaymentsError, StripeLookup
from app.settings import ROOT
from webhooks.handlers import apply_event
from webhooks.inbox import claim_event, mark_processed, record_failure

log = logging.getLogger(__name__)

# Every kind of outbox job the worker runs, by kind.
JOB_RUNNERS: dict[str, Runner] = {**receipts.RUNNERS}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_seconds: float = 60
    max_delay_seconds: float = 3600

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=max(1, int(settings["WEBHOOK_MAX_ATTEMPTS"])),
            base_delay_seconds=float(settings["WEBHOOK_RETRY_BASE_SECONDS"]),
            max_delay_seconds=float(settings["WEBHOOK_RETRY_MAX_SECONDS"]),
        )


@dataclass(frozen=True)
class Jobs:
    """The outbox work a worker does between events: the runners by kind,
    what they may use, and their retry policy."""

    context: JobContext
    policy: JobPolicy
    runners: Mapping[str, Runner] = field(default_factory=lambda: JOB_RUNNERS)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], payments: StripeLookup | None) -> Jobs:
        mail = MailSettings.from_settings(settings, ROOT)
        return cls(JobContext(settings, mail, payments), JobPolicy.from_settings(settings))

    def run_next(self, database: Database, *, key: str | None = None) -> JobOutcome | None:
        return run_next_job(database, self.runners, self.context, self.policy, key=key)


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed event: processed, failed (will be retried),
    dead, or raced (another worker recorded this attempt's outcome first)."""

    stripe_event_id: str
    type: str
    status: str
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """The error kept on the event for staff: type and message, no traceback,
    no personal data (our exceptions and Stripe's messages carry none; database
    errors are cut to the driver's message)."""
    if isinstance(exc, StatementError):
        # SQLAlchemy appends the statement's parameters, and PostgreSQL's DETAIL
        # line repeats key values (an email): keep the driver's first line only.
        first_line = next(iter(str(exc.orig).splitlines()), "") if exc.orig else ""
        return f"{type(exc).__name__}: {type(exc.orig).__name__}: {first_line}"
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PaymentsError) and exc.request_id:
        text += f" (Stripe request {exc.request_id})"
    return text


def process_next(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    stripe_event_id: str | None = None,
) -> Outcome | None:
    """Claim the next due event (or the given one, if it is due and not held by
    another worker), apply it, commit. None when there is nothing to claim.
    `payments` is the app's StripeApi or sandbox, passed to the handlers."""
    session = database.session()
    claimed: tuple[int, str, str, int] | None = None
    try:
        with session.begin():
            event = claim_event(session, utcnow(), stripe_event_id=stripe_event_id)
            if event is None:
                return None
            claimed = (event.id, event.stripe_event_id, event.type, event.attempts)
            apply_event(session, json.loads(event.payload), payments)
            mark_processed(session, event, utcnow())
        log.info("event %s %s: processed", event.stripe_event_id, event.type)
        return Outcome(event.stripe_event_id, event.type, "processed")
    except Exception as exc:
        if claimed is None:
            raise  # the claim itself failed: the database, not the event
        row_id, event_id, event_type, seen_attempts = claimed
        error = describe_error(exc)
        not_found = isinstance(exc, PaymentsError) and exc.kind == "not_found"
        with session.begin():
            status = record_failure(
                session,
                row_id,
                seen_attempts=seen_attempts,
                error=error,
                now=utcnow(),
                max_attempts=policy.max_attempts,
                base_delay_seconds=policy.base_delay_seconds,
                max_delay_seconds=policy.max_delay_seconds,
                dead_at_once=not_found,
            )
        log.warning(
            "event %s %s: %s after %s",
            event_id,
            event_type,
            status or "raced",
            type(exc).__name__,
        )
        return Outcome(event_id, event_type, status or "raced", error)
    finally:
        session.close()


def drain(
    database: Database, payments: StripeLookup, policy: RetryPolicy, *, jobs: Jobs | None = None
) -> list[Outcome | JobOutcome]:
    """Process every due event (and, with `jobs`, every due outbox job, one of
    each in turn: an event may queue a job) until none is left. A failure is
    not due again before its backoff, so this ends."""
    outcomes: list[Outcome | JobOutcome] = []
    while True:
        outcome = process_next(database, payments, policy)
        job = jobs.run_next(database) if jobs is not None else None
        outcomes.extend(o for o in (outcome, job) if o is not None)
        if outcome is None and job is None:
            return outcomes


def run(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    stop: threading.Event,
    idle_seconds: float = 1.0,
    when_idle: Callable[[], object] | None = None,
    jobs: Jobs | None = None,
) -> None:
    """Process events (and, with `jobs`, outbox jobs, one of each in turn)
    until `stop` is set, sleeping `idle_seconds` when nothing is due (after
    `when_idle`, the scheduled work, if given). The event or job in hand is
    always finished before stopping. A database outage is logged and waited
    out, not fatal."""
    while not stop.is_set():
        try:
            outcome = process_next(database, payments, policy)
        except Exception as exc:
            log.error("worker: cannot claim events (%s); retrying", type(exc).__name__)
            outcome = None
        job = None
        if jobs is not None and not stop.is_set():
            try:
                job = jobs.run_next(database)
            except Exception as exc:
                log.error("worker: cannot claim jobs (%s); retrying", type(exc).__name__)
        if outcome is None and job is None:
            if when_idle is not None:
                try:
                    when_idle()
                except Exception as exc:  # scheduled work never stops the worker
                    log.error("worker: scheduled work failed (%s)", type(exc).__name__)
            stop.wait(idle_seconds)
