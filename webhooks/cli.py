"""`donations worker [--once]`, `donations events ...` (replay, failed) and
`donations jobs ...` (the outbox's failed and dead jobs, replay).

Each command owns its transactions; bad input is a one-line error and exit
status 2.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from functools import partial
from types import FrameType
from typing import Any, NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from app.clock import utcnow
from app.db import Database
from app.outbox.queue import find_jobs, list_failed_jobs, reset_jobs_for_replay
from app.outbox.runner import JobOutcome
from app.reconcile.schedule import run_due
from webhooks.hooks import webhooks
from webhooks.inbox import find_events, list_failed, reset_for_replay
from webhooks.upkeep import Pruning
from webhooks.worker import Jobs, Outcome, RetryPolicy, drain, process_next, run


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


def _database() -> Database:
    database: Database = current_app.extensions["donations.db"]
    return database


def _payments() -> Any:
    return current_app.extensions.get("donations.payments")


def _jobs() -> Jobs:
    return Jobs.from_settings(current_app.config, _payments())


def _pace() -> dict[str, Any]:
    config = current_app.config
    return {
        "batch_size": max(1, int(config["WORKER_BATCH_SIZE"])),
        "lanes": max(1, int(config["WORKER_LANES"])),
        "rollup_every_seconds": float(config["LEDGER_ROLLUP_EVERY_SECONDS"]),
    }


def _summary(outcomes: Sequence[Outcome | JobOutcome]) -> str:
    counts = {status: 0 for status in ("processed", "failed", "dead")}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in counts.items())


@click.command()
@click.option("--once", is_flag=True, help="Process every due event, then exit.")
@with_appcontext
def worker(once: bool) -> None:
    """Apply stored Stripe events to the ledger and run outbox jobs (several
    workers may share the work)."""
    policy = RetryPolicy.from_settings(current_app.config)
    if once:
        outcomes = drain(_database(), _payments(), policy, jobs=_jobs(), **_pace())
        click.echo(f"events: {_summary([o for o in outcomes if isinstance(o, Outcome)])}")
        click.echo(f"jobs: {_summary([o for o in outcomes if isinstance(o, JobOutcome)])}")
        return
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"worker: {signal.Signals(signum).name}, stopping", err=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    click.echo("worker: started", err=True)
    config = current_app.config
    run(
        _database(),
        _payments(),
        policy,
        stop=stop,
        idle_seconds=float(config["WORKER_IDLE_SECONDS"]),
        when_idle=partial(run_due, _database(), _payments(), webhooks(), config),
        jobs=_jobs(),
        pruning=Pruning.from_settings(_database(), config),
        **_pace(),
    )
    click.echo("worker: stopped", err=True)


@click.group()
def events() -> None:
    """Stored Stripe webhook events."""


@events.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--failed", "failed", is_flag=True, help="Replay every failed and dead event.")
@with_appcontext
def replay(event_ids: tuple[str, ...], failed: bool) -> None:
    """Process stored events again now (EVENT_ID... or --failed).

    Each replayed event gets a fresh retry budget (attempts reset to 0).
    Replaying a processed event is harmless: ledger entries are keyed.
    """
    if bool(event_ids) == failed:
        _fail("give event ids or --failed (one of them)")
    database = _database()
    session = database.session()
    try:
        with session.begin():
            if failed:
                chosen = list_failed(session)
            else:
                found = {event.stripe_event_id: event for event in find_events(session, event_ids)}
                unknown = [event_id for event_id in event_ids if event_id not in found]
                if unknown:
                    _fail(f"no stored event {', '.join(unknown)}")
                skipped = [
                    event_id for event_id in event_ids if found[event_id].status == "skipped"
                ]
                if skipped:
                    _fail(f"{', '.join(skipped)} skipped (other livemode), not replayed")
                chosen = [found[event_id] for event_id in dict.fromkeys(event_ids)]
            reset_for_replay(session, chosen, utcnow())
            chosen_ids = [event.stripe_event_id for event in chosen]
    finally:
        session.close()
    if not chosen_ids:
        click.echo("no failed or dead events")
        return

    policy = RetryPolicy.from_settings(current_app.config)
    outcomes: list[Outcome] = []
    for event_id in chosen_ids:
        outcome = process_next(database, _payments(), policy, stripe_event_id=event_id)
        if outcome is None:  # another worker claimed it after the reset
            click.echo(f"{event_id}: taken by another worker")
            continue
        outcomes.append(outcome)
        line = f"{outcome.stripe_event_id} {outcome.type}: {outcome.status}"
        click.echo(line + (f" ({outcome.error})" if outcome.error else ""))
    click.echo(f"replayed: {_summary(outcomes)}")
    if any(outcome.status != "processed" for outcome in outcomes):
        raise click.exceptions.Exit(1)


@events.command("failed")
@with_appcontext
def show_failed() -> None:
    """List failed and dead events with their last error."""
    session = _database().session()
    try:
        found = list_failed(session)
        if not found:
            click.echo("no failed or dead events")
        for event in found:
            click.echo(
                f"{event.stripe_event_id}\t{event.type}\t{event.status}\t"
                f"attempts={event.attempts}\t{event.last_error or ''}"
            )
    finally:
        session.close()


@click.group()
def jobs() -> None:
    """Outbox jobs (receipts, notices, statements) the worker runs."""


@jobs.command("failed")
@with_appcontext
def show_failed_jobs() -> None:
    """List failed and dead jobs with their last error (never an address)."""
    session = _database().session()
    try:
        for job in list_failed_jobs(session):
            click.echo(
                f"{job.key}\t{job.kind}\t{job.status}\t"
                f"attempts={job.attempts}\t{job.last_error or ''}"
            )
    finally:
        session.close()


@jobs.command("replay")
@click.argument("keys", nargs=-1)
@click.option("--failed", "failed", is_flag=True, help="Replay every failed and dead job.")
@with_appcontext
def replay_jobs(keys: tuple[str, ...], failed: bool) -> None:
    """Run failed or dead jobs again now (KEY... or --failed), each with a
    fresh retry budget. A job that is done is never run again."""
    if bool(keys) == failed:
        _fail("give job keys or --failed (one of them)")
    database = _database()
    session = database.session()
    try:
        with session.begin():
            if failed:
                chosen = list_failed_jobs(session)
            else:
                found = {job.key: job for job in find_jobs(session, keys)}
                unknown = [key for key in keys if key not in found]
                if unknown:
                    _fail(f"no job {', '.join(unknown)}")
                done = [key for key in keys if found[key].status == "done"]
                if done:
                    _fail(f"{', '.join(done)} done already, not run again")
                chosen = [found[key] for key in dict.fromkeys(keys)]
            reset_jobs_for_replay(session, chosen, utcnow())
            chosen_keys = [job.key for job in chosen]
    finally:
        session.close()
    if not chosen_keys:
        click.echo("no failed or dead jobs")
        return
    work = _jobs()
    outcomes: list[JobOutcome] = []
    for key in chosen_keys:
        outcome = work.run_next(database, key=key)
        if outcome is None:  # another worker took it after the reset
            click.echo(f"{key}: taken by another worker")
            continue
        outcomes.append(outcome)
        line = f"{outcome.key} {outcome.kind}: {outcome.status}"
        click.echo(line + (f" ({outcome.error})" if outcome.error else ""))
    click.echo(f"replayed: {_summary(outcomes)}")
    if any(outcome.status != "processed" for outcome in outcomes):
        raise click.exceptions.Exit(1)
