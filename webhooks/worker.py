"""The worker: claims stored events in batches and applies them to the ledger,
a batch in one transaction (one claim, one mark, one commit for up to
`batch_size` events); when any event of a batch fails, the batch is rolled
back and its events applied one transaction each, so a failure is retried
with exponential backoff and an event is marked dead after the last attempt
(or at once when Stripe says the object it needs does not exist), as before.
On PostgreSQL a worker runs `lanes` such loops in threads, each on its own
connection and claiming its own share of the inbox (events about one
customer or payment fall to one lane, so lanes seldom wait for each other's
rows): while one lane waits for PostgreSQL, another runs its Python (each
about half of an event's time).
Between batches it runs the outbox's due jobs (receipts, notices, magic links:
app.outbox.runner, the kinds in JOB_RUNNERS) when given `jobs`, and every few
seconds the daily totals' roll-up; when idle, once a day, it prunes what is
kept only for a while (webhooks.upkeep).

Knows no Flask; the CLI hands it the database, the payments provider and the
retry policy. Each transaction is committed here, the edge.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app import manage, receipts
from app.clock import utcnow
from app.db import Database
from app.outbox.mail import MailSettings
from app.outbox.runner import JobContext, JobOutcome, JobPolicy, Runner, run_next_job
from app.payments import PaymentsError, StripeLookup
from app.settings import ROOT
from webhooks.errors import Conflict, describe_error, is_conflict
from webhooks.handlers import apply_event
from webhooks.inbox import (
    claim_event,
    claim_events,
    mark_all_processed,
    mark_processed,
    record_failure,
)
from webhooks.upkeep import ROLLUP_EVERY_SECONDS, Pruning, RollUps

log = logging.getLogger(__name__)

# Every kind of outbox job the worker runs, by kind.
JOB_RUNNERS: dict[str, Runner] = {**receipts.RUNNERS, **manage.RUNNERS}
# Events per transaction (the setting worker_batch_size).
BATCH_SIZE = 20
# Threads of one worker that claim and apply batches (the setting worker_lanes).
LANES = 2
# Times an event PostgreSQL aborted for another transaction (webhooks.errors)
# is applied again at once, rather than after a failure's backoff.
CONFLICT_RETRIES = 3


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


def process_next(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    stripe_event_id: str | None = None,
) -> Outcome | None:
    """Claim the next due event (or the given one, if it is due and not held by
    another worker), apply it, commit. None when there is nothing to claim.
    `payments` is the app's StripeApi or sandbox, passed to the handlers.

    Workers applying events about the same objects (a donor, a charge) at
    once can deadlock; PostgreSQL then aborts one of them. That event is
    applied again at once, up to CONFLICT_RETRIES times, before it counts as
    a failure with its backoff."""
    for _ in range(CONFLICT_RETRIES):
        try:
            return _process_one(database, payments, policy, stripe_event_id, conflicts_raise=True)
        except Conflict as conflict:
            stripe_event_id = conflict.stripe_event_id
            log.info("event %s: aborted for another transaction; applied again", stripe_event_id)
    return _process_one(database, payments, policy, stripe_event_id, conflicts_raise=False)


def _process_one(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    stripe_event_id: str | None,
    *,
    conflicts_raise: bool,
) -> Outcome | None:
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
        if conflicts_raise and is_conflict(exc):
            raise Conflict(event_id) from exc
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


def process_batch(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    size: int = BATCH_SIZE,
    share: tuple[int, int] | None = None,
) -> list[Outcome]:
    """Claim up to `size` due events and apply them in order in one
    transaction: one claim, one mark and one commit for the batch. Between
    events the session is flushed and emptied, so each event reads the rows
    afresh as it would in a transaction of its own. If any event fails, the
    whole batch is rolled back and its events are applied one transaction
    each (`process_next`), which records the failure, its retry or its
    death exactly as for a single event. [] when nothing is due. `share`
    (lane, lanes): only that lane's share of the inbox (`claim_events`)."""
    if size <= 1:
        outcome = process_next(database, payments, policy)
        return [outcome] if outcome is not None else []
    session = database.session()
    claimed = []
    try:
        with session.begin():
            claimed = claim_events(session, utcnow(), limit=size, share=share)
            for event in claimed:
                apply_event(session, json.loads(event.payload), payments)
                session.flush()
                session.expunge_all()
            mark_all_processed(session, [event.id for event in claimed], utcnow())
    except Exception as exc:
        if not claimed:
            raise  # the claim itself failed: the database, not an event
        log.info("batch of %s events: %s; one at a time", len(claimed), type(exc).__name__)
        outcomes = []
        for event in claimed:
            outcome = process_next(
                database, payments, policy, stripe_event_id=event.stripe_event_id
            )
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes
    finally:
        session.close()
    for event in claimed:
        log.info("event %s %s: processed", event.stripe_event_id, event.type)
    return [Outcome(event.stripe_event_id, event.type, "processed") for event in claimed]


def _run_jobs(jobs: Jobs | None, database: Database, count: int) -> list[JobOutcome]:
    """Up to `count` due outbox jobs (at least one turn), until none is due."""
    outcomes: list[JobOutcome] = []
    if jobs is None:
        return outcomes
    for _ in range(max(1, count)):
        job = jobs.run_next(database)
        if job is None:
            break
        outcomes.append(job)
    return outcomes


def lane_count(database: Database, lanes: int) -> int:
    """The lanes a worker runs on this database: `lanes` on PostgreSQL, one on
    SQLite (one writer at a time)."""
    return max(1, lanes) if database.dialect == "postgresql" else 1


def _apply_all(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    batch_size: int,
    share: tuple[int, int],
) -> list[Outcome]:
    """An extra lane of `drain`: batches of its share until none is left to claim."""
    outcomes: list[Outcome] = []
    while batch := process_batch(database, payments, policy, size=batch_size, share=share):
        outcomes.extend(batch)
    return outcomes


def drain(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    jobs: Jobs | None = None,
    batch_size: int = BATCH_SIZE,
    rollup_every_seconds: float = ROLLUP_EVERY_SECONDS,
    lanes: int = 1,
) -> list[Outcome | JobOutcome]:
    """Process every due event (and, with `jobs`, the due outbox jobs, in turn
    with each batch: an event may queue a job) until none is left, then roll
    the daily totals up. With `lanes` above one (PostgreSQL), each lane (this
    thread the first) applies batches of its share of the inbox (events
    about one customer or payment share a lane: `claim_events`) until none
    is left to claim; this thread then looks once more at the whole inbox,
    for the jobs the others' events queued. A failure is not due again
    before its backoff, so this ends; a lane's error is raised here."""
    outcomes: list[Outcome | JobOutcome] = []
    rollups = RollUps(database, rollup_every_seconds, last=time.monotonic())
    count = lane_count(database, lanes)
    with ThreadPoolExecutor(max_workers=max(1, count - 1), thread_name_prefix="lane") as pool:
        others = [
            pool.submit(_apply_all, database, payments, policy, batch_size, (lane, count))
            for lane in range(1, count)
        ]
        while True:
            share = (0, count) if others else None
            batch = process_batch(database, payments, policy, size=batch_size, share=share)
            done = _run_jobs(jobs, database, len(batch))
            outcomes.extend(batch)
            outcomes.extend(done)
            if batch or done:
                rollups.run()
                continue
            if not others:
                rollups.run(force=True)
                return outcomes
            for lane in others:
                outcomes.extend(lane.result())
            others = []


def run(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    *,
    stop: threading.Event,
    idle_seconds: float = 1.0,
    when_idle: Callable[[], object] | None = None,
    jobs: Jobs | None = None,
    batch_size: int = BATCH_SIZE,
    rollup_every_seconds: float = ROLLUP_EVERY_SECONDS,
    pruning: Pruning | None = None,
    lanes: int = 1,
) -> None:
    """Process events in batches (and, with `jobs`, outbox jobs, in turn with
    each batch) until `stop` is set, rolling the daily totals up every
    `rollup_every_seconds`, sleeping `idle_seconds` when nothing is due
    (after `pruning`, when due, and `when_idle`, the scheduled work, if
    given). With `lanes` above one (PostgreSQL), each lane claims its share
    of the inbox (`claim_events`), and the others only apply batches
    (`_event_lane`). The batch or job in hand, in every lane, is
    always finished before stopping. A database outage is logged and waited
    out, not fatal."""
    count = lane_count(database, lanes)
    share = (0, count)  # the whole inbox with one lane (claim_events)
    extra = [
        threading.Thread(
            target=_event_lane,
            args=(database, payments, policy, stop, idle_seconds, batch_size, (lane, count)),
            name=f"lane-{lane + 1}",
        )
        for lane in range(1, count)
    ]
    for lane in extra:
        lane.start()
    try:
        rollups = RollUps(database, rollup_every_seconds)
        while not stop.is_set():
            batch = _next_batch(database, payments, policy, batch_size, share)
            done: list[JobOutcome] = []
            if jobs is not None and not stop.is_set():
                try:
                    done = _run_jobs(jobs, database, len(batch))
                except Exception as exc:
                    log.error("worker: cannot claim jobs (%s); retrying", type(exc).__name__)
            rollups.run()
            if not batch and not done:
                if pruning is not None:
                    pruning.run()
                if when_idle is not None:
                    try:
                        when_idle()
                    except Exception as exc:  # scheduled work never stops the worker
                        log.error("worker: scheduled work failed (%s)", type(exc).__name__)
                stop.wait(idle_seconds)
    finally:
        stop.set()  # the others stop with this lane, whatever stopped it
        for lane in extra:
            lane.join()


def _event_lane(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    stop: threading.Event,
    idle_seconds: float,
    batch_size: int,
    share: tuple[int, int],
) -> None:
    """An extra lane of `run`: batches of its share until `stop`, waiting
    `idle_seconds` when none is due. The outbox, roll-ups, pruning and
    scheduled work stay with the first lane."""
    while not stop.is_set():
        if not _next_batch(database, payments, policy, batch_size, share):
            stop.wait(idle_seconds)


def _next_batch(
    database: Database,
    payments: StripeLookup,
    policy: RetryPolicy,
    batch_size: int,
    share: tuple[int, int] | None,
) -> list[Outcome]:
    """`process_batch` for `run`'s lanes: a database outage is logged and
    waited out ([]), not fatal."""
    try:
        return process_batch(database, payments, policy, size=batch_size, share=share)
    except Exception as exc:
        log.error("worker: cannot claim events (%s); retrying", type(exc).__name__)
        return []
