"""Counting appeal events without personal data: one row per (appeal,
variant, UTC day, event) holding a number, raised by an upsert, so a
million impressions are a few rows and nothing about any reader.

No Flask; never commits (the view does).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from app.appeals.models import COUNTER_EVENTS, AppealCounter
from app.db import insert_for


def count_event(
    session: Session,
    appeal: str,
    variant: str,
    event: str,
    day: date,
    by: int = 1,
    *,
    durable: bool = True,
) -> None:
    """Add `by` to the counter of (appeal, variant, day, event). With
    `durable=False` (impressions and clicks) PostgreSQL may acknowledge the
    commit before it reaches the disk: a crash can lose the last few counts,
    never money, and a burst of beacons does not wait on a flush each."""
    if event not in COUNTER_EVENTS:
        raise ValueError(f"unknown appeal event {event!r}")
    if not durable and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    table = AppealCounter.__table__
    statement = insert_for(session)(table).values(
        appeal=appeal[:40], variant=variant[:20], day=day, event=event, count=by
    )
    statement = statement.on_conflict_do_update(
        index_elements=["appeal", "variant", "day", "event"],
        set_={"count": table.c.count + statement.excluded.count},
    )
    session.execute(statement)


def prune_counters(session: Session, *, before: date) -> int:
    """Delete the counters of days before `before` (the funnel then reaches
    back no further). Returns how many rows went."""
    result = session.execute(
        delete(AppealCounter)
        .where(AppealCounter.day < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
