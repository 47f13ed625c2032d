"""The webhook pipeline as staff see it: counts of waiting, failed and dead
events, the last one received, and the keyset-paged event list. Reads the
inbox only: never retries, changes or deletes an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.finance.reports.periods import PAGE_SIZE
from webhooks.inbox import StripeEvent

EVENT_STATUSES = ("pending", "processed", "failed", "dead", "skipped")


@dataclass
class PipelineHealth:
    waiting: int  # pending: stored, not yet applied
    failed: int  # failed, to be retried
    dead: int  # out of attempts: needs a person
    last_received_at: datetime | None


def pipeline_health(session: Session) -> PipelineHealth:
    counts = dict(
        session.execute(
            select(StripeEvent.status, func.count())
            .where(StripeEvent.status.in_(("pending", "failed", "dead")))
            .group_by(StripeEvent.status)
        ).all()
    )
    last = session.scalar(select(func.max(StripeEvent.received_at)))
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return PipelineHealth(
        waiting=int(counts.get("pending", 0)),
        failed=int(counts.get("failed", 0)),
        dead=int(counts.get("dead", 0)),
        last_received_at=last,
    )


def list_events(
    session: Session,
    *,
    status: str | None = None,
    event_type: str | None = None,
    before_id: int | None = None,
    size: int = PAGE_SIZE,
) -> tuple[list[StripeEvent], int | None]:
    """Stored events, newest first (by row id, the order they were stored),
    keyset-paged: the page and the id to continue before."""
    query = select(StripeEvent)
    if status:
        query = query.where(StripeEvent.status == status)
    if event_type:
        query = query.where(StripeEvent.type == event_type)
    if before_id is not None:
        query = query.where(StripeEvent.id < before_id)
    found = list(session.scalars(query.order_by(StripeEvent.id.desc()).limit(size + 1)))
    page = found[:size]
    return page, (page[-1].id if len(found) > size else None)
