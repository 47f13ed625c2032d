"""Running a sync and keeping its report: `perform` (the CLI, the worker's
schedule and the finance area's button all go through it), and `run_due`,
which a worker calls when idle: a run asked for on /ledger/reconciliation, or
the daily one (`stripe_sync_every_hours`, over the last
`stripe_sync_lookback_days`), one at a time across every worker (a
PostgreSQL advisory lock; SQLite has one worker). A scheduled run's cursors
are keyed as scheduled, so one that stopped is finished by the next scheduled
run (before that run's own window) and no cursors pile up. No Flask, no `stripe`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import Database
from app.payments import Webhooks
from app.reconcile.models import SyncCursor, SyncRequest, SyncRun
from app.reconcile.report import Report, reconcile
from app.reconcile.sync import (
    SCHEDULED_PREFIX,
    Pacer,
    Window,
    forget_cursors,
    sync_objects,
)

log = logging.getLogger(__name__)
LOCK_KEY = 0x5EC0_4C11  # pg_advisory lock id: one sync at a time


@dataclass(frozen=True)
class Outcome:
    report: Report
    run: SyncRun
    data: dict[str, Any]
    calls: int


def perform(
    database: Database,
    stripe: Any,
    hooks: Webhooks,
    window: Window,
    *,
    report_only: bool,
    config: Mapping[str, Any],
    progress: Callable[[str, int], None] = lambda resource, count: None,
) -> Outcome:
    """Sync the window (unless `report_only`), reconcile it, keep the run.
    Raises PaymentsError when Stripe fails; what was posted stays, and the
    cursors let the next run go on."""
    pacer = Pacer(
        stripe,
        float(config["STRIPE_SYNC_REQUESTS_PER_SECOND"]),
        max_retries=int(config["STRIPE_SYNC_MAX_RETRIES"]),
    )
    api_version = str(config["STRIPE_API_VERSION"])
    began = utcnow()
    applied = 0
    unlisted: dict[str, str] = {}
    if not report_only:
        synced = sync_objects(
            database, pacer, hooks, stripe, window, api_version=api_version, progress=progress
        )
        applied, unlisted = synced.applied, synced.unlisted
    report = reconcile(
        database,
        pacer,
        hooks,
        stripe,
        window,
        post=not report_only,
        api_version=api_version,
        progress=progress,
    )
    report.unlisted[:0] = [{"list": name, "reason": why} for name, why in unlisted.items()]
    if not report_only:
        forget_cursors(database, window)
    zone = ZoneInfo(str(config.get("LEDGER_REPORTING_TZ") or "UTC"))
    data = report.as_json(zone)
    run = SyncRun(
        started_at=began,
        finished_at=utcnow(),
        window_since=window.since,
        window_until=window.until,
        report_only=report_only,
        posted=applied + report.posted,
        differences=report.differences,
        report=json.dumps(data),
    )
    with database.session() as session, session.begin():
        session.add(run)
    return Outcome(report, run, data, pacer.calls)


@contextmanager
def one_at_a_time(database: Database) -> Iterator[bool]:
    """True inside when this process holds the sync lock (always on SQLite)."""
    if database.dialect != "postgresql":
        yield True
        return
    with database.engine.connect() as conn:
        got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}))
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.commit()


def latest_run(session: Session) -> SyncRun | None:
    """The last finished run (the dashboard shows it)."""
    return session.scalars(
        select(SyncRun).order_by(SyncRun.finished_at.desc(), SyncRun.id.desc()).limit(1)
    ).first()


def interrupted_scheduled(database: Database) -> Window | None:
    """The latest scheduled window whose run stopped before it finished (its
    cursors are still there), to be finished; the cursors of any earlier
    interrupted scheduled window are deleted (that run is superseded: the
    latest one reaches further back than its own lookback)."""
    with database.session() as session, session.begin():
        keys = session.scalars(
            select(SyncCursor.window)
            .where(SyncCursor.window.startswith(SCHEDULED_PREFIX))
            .distinct()
        ).all()
        if not keys:
            return None
        windows = sorted(
            (Window.from_key(key) for key in keys),
            key=lambda w: w.since or datetime.min.replace(tzinfo=UTC),
        )
        stale = [w.key for w in windows[:-1]]
        if stale:
            session.execute(delete(SyncCursor).where(SyncCursor.window.in_(stale)))
        return windows[-1]


def run_due(
    database: Database, stripe: Any, hooks: Webhooks, config: Mapping[str, Any]
) -> SyncRun | None:
    """Carry out a requested run, or the scheduled one when it is due."""
    if not hasattr(stripe, "list_page"):
        return None  # the offline sandbox has no lists
    now = utcnow()
    with database.session() as session:
        pending = session.scalars(
            select(SyncRequest).where(SyncRequest.started_at.is_(None)).order_by(SyncRequest.id)
        ).first()
        latest = session.scalar(select(func.max(SyncRun.finished_at)))
    every = float(config["STRIPE_SYNC_EVERY_HOURS"])
    scheduled = every > 0 and (latest is None or now - latest >= timedelta(hours=every))
    if pending is None and not scheduled:
        return None
    with one_at_a_time(database) as mine:
        if not mine:
            return None
        if pending is not None:
            window = Window(pending.window_since, pending.window_until)
            report_only = pending.report_only
        else:
            lookback = timedelta(days=float(config["STRIPE_SYNC_LOOKBACK_DAYS"]))
            window = Window((now - lookback).astimezone(UTC), None, scheduled=True)
            report_only = False
            # A scheduled run that stopped (Stripe down, the worker killed) is
            # finished first from its cursors: the part of its window this
            # one does not reach back to is covered, and its cursors go.
            unfinished = interrupted_scheduled(database)
            if unfinished is not None and unfinished.key != window.key:
                perform(database, stripe, hooks, unfinished, report_only=False, config=config)
        if pending is not None:
            with database.session() as session, session.begin():
                row = session.get(SyncRequest, pending.id)
                if row is None or row.started_at is not None:
                    return None
                row.started_at = now
        outcome = perform(database, stripe, hooks, window, report_only=report_only, config=config)
        if pending is not None:
            with database.session() as session, session.begin():
                row = session.get(SyncRequest, pending.id)
                if row is not None:
                    row.sync_run_id = outcome.run.id
        log.info("stripe sync: %s differences", outcome.report.differences)
        return outcome.run


def request_run(
    database: Database,
    *,
    staff_id: int | None,
    since: datetime | None,
    until: datetime | None,
    report_only: bool,
) -> None:
    with database.session() as session, session.begin():
        session.add(
            SyncRequest(
                requested_at=utcnow(),
                requested_by=staff_id,
                window_since=since,
                window_until=until,
                report_only=report_only,
            )
        )
