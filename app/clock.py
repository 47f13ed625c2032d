"""The one source of "now" for the whole application, and the one rule for
waiting before a retry (`backoff`).

Everything that needs the current time calls `utcnow()`; tests move the clock
with `frozen_at(...)` instead of patching. Always timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC)


@contextmanager
def frozen_at(moment: datetime) -> Iterator[None]:
    """Make `utcnow()` return `moment` inside the block (for tests and replays)."""
    global _frozen
    if moment.tzinfo is None:
        raise ValueError("frozen_at needs a timezone-aware datetime")
    previous, _frozen = _frozen, moment.astimezone(UTC)
    try:
        yield
    finally:
        _frozen = previous


def backoff(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """How long to wait after the `attempts`-th failure (webhook events and
    outbox jobs alike): base, 2*base, 4*base, ... capped at max_seconds, and
    never under one second."""
    seconds = base_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=max(1.0, min(seconds, max_seconds)))
