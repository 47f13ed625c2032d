"""What the worker makes of an exception raised while applying an event:
the text kept on the event for staff (`describe_error`), and whether
PostgreSQL aborted the transaction for another's sake (`is_conflict`), in
which case the event is applied again at once (webhooks.worker).

Imports no Flask and no `stripe`.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, StatementError

from app.payments import PaymentsError

# PostgreSQL's deadlock_detected and serialization_failure.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


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


class Conflict(Exception):
    """An event's transaction was aborted by PostgreSQL for another's sake."""

    def __init__(self, stripe_event_id: str) -> None:
        super().__init__(stripe_event_id)
        self.stripe_event_id = stripe_event_id


def is_conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction because another one was in
    its way (a deadlock, a serialization failure): nothing about the event."""
    return isinstance(exc, DBAPIError) and (
        getattr(exc.orig, "sqlstate", None) in CONFLICT_SQLSTATES
    )
