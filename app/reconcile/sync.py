"""`donations stripe sync`: page through Stripe's lists for a window and post
whatever the ledger lacks through the webhook handlers' own dispatcher
(`app.payments.Webhooks`), each listed object wrapped as the event that would
have carried it, so a missed webhook and years of history are recovered the
same way, idempotently (every posting is keyed). On PostgreSQL a page of
charges is posted at once (`app.reconcile.charges`: a few statements per page
for plain historical gifts, the handler for any other, the same ledger).

Lists come in an order that lets each object find what it needs already
recorded (subscriptions and invoices before the charges that paid them, charges
before their refunds and disputes), with balance transactions expanded, so
fees arrive one call per 100 objects. A page's postings and the cursor past it
commit together, so a stopped (even killed) run resumes after the last page it
committed. Calls are paced under `stripe_sync_requests_per_second`; a 429 backs
off. No Flask, no `stripe`; commits here, one transaction per page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import Database, insert_for
from app.payments import PaymentsError, StripeLists, StripeLookup, Webhooks
from app.reconcile.charges import post_charges
from app.reconcile.models import SyncCursor
from app.reconcile.pages import apply_page, one_by_one

Json = dict[str, Any]
T = TypeVar("T")
PAGE_SIZE = 100
MAX_BACKOFF_SECONDS = 60.0
SCHEDULED_PREFIX = "scheduled:"


@dataclass(frozen=True)
class Resource:
    """One Stripe list and the event type its objects are applied as (None:
    listed for the report only)."""

    name: str
    event_type: Callable[[Json], str | None]
    params: dict[str, Any] = field(default_factory=dict)
    # Objects an object carries expanded, applied after it: (event type, object).
    carried: Callable[[Json], list[tuple[str, Json]]] = lambda obj: []


def _paid(event_type: str) -> Callable[[Json], str | None]:
    return lambda obj: event_type if obj.get("status") == "paid" else None


def _invoice_charge(invoice: Json) -> list[tuple[str, Json]]:
    """An old-shape paid invoice with its charge expanded (`invoice.charge`;
    localstripe lists them so, while its charges say `invoice: null`): the
    charge as Stripe's old shape had it, naming the invoice that it paid, so
    it is recognised as the membership payment it is. Never under endive,
    whose invoices carry no `charge`."""
    charge = invoice.get("charge")
    if invoice.get("status") != "paid" or not isinstance(charge, dict):
        return []
    return [("charge.updated", {**charge, "invoice": invoice["id"]})]


# The order matters: records first, money after (see the module's docstring).
RESOURCES = (
    Resource("subscriptions", lambda obj: "customer.subscription.updated", {"status": "all"}),
    Resource("invoices", _paid("invoice.paid"), carried=_invoice_charge),
    Resource("invoice_payments", _paid("invoice_payment.paid")),
    Resource("charges", lambda obj: "charge.updated", {"expand": ["data.balance_transaction"]}),
    Resource(
        "refunds",
        lambda obj: "refund.updated",
        {"expand": ["data.balance_transaction", "data.failure_balance_transaction"]},
    ),
    Resource("disputes", lambda obj: "charge.dispute.updated"),
    Resource(
        "payouts",
        lambda obj: "payout.paid",
        {"expand": ["data.balance_transaction", "data.failure_balance_transaction"]},
    ),
)


@dataclass(frozen=True)
class Window:
    """[since, until) in UTC; None is open-ended. `scheduled` marks the
    worker's own runs (`app.reconcile.schedule`): their cursors are keyed
    apart ("scheduled:SINCE..UNTIL"), so the next scheduled run can find an
    interrupted one's and finish it instead of leaving them behind."""

    since: datetime | None
    until: datetime | None
    scheduled: bool = False

    @property
    def key(self) -> str:
        def unix(moment: datetime | None) -> str:
            return "" if moment is None else str(int(moment.timestamp()))

        bounds = f"{unix(self.since)}..{unix(self.until)}"
        return f"{SCHEDULED_PREFIX}{bounds}" if self.scheduled else bounds

    @classmethod
    def from_key(cls, key: str) -> Window:
        """The window a cursor's key names (the inverse of `key`)."""
        scheduled = key.startswith(SCHEDULED_PREFIX)
        since, _, until = key.removeprefix(SCHEDULED_PREFIX).partition("..")

        def moment(unix: str) -> datetime | None:
            return datetime.fromtimestamp(int(unix), UTC) if unix else None

        return cls(moment(since), moment(until), scheduled=scheduled)

    def created(self) -> dict[str, int]:
        bounds: dict[str, int] = {}
        if self.since is not None:
            bounds["gte"] = int(self.since.timestamp())
        if self.until is not None:
            bounds["lt"] = int(self.until.timestamp())
        return bounds


class ListUnreadable(PaymentsError):
    """A list this Stripe does not have (404) or a filter it refuses (400),
    as with a stand-in such as localstripe (no invoice payments, no disputes):
    the rest of a sync goes on, and the report names what it could not read.
    An outage (429, 5xx) is not this: it stops the run, to resume later."""

    def __init__(self, resource: str, cause: PaymentsError) -> None:
        super().__init__(cause.kind, f"{resource} list: {cause}", request_id=cause.request_id)
        self.resource = resource
        self.reason = str(cause)


class Pacer:
    """Keeps calls under `per_second` and retries a 429 with growing waits.
    `sleep` is injectable so tests need not wait."""

    def __init__(
        self,
        lists: StripeLists,
        per_second: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 8,
    ) -> None:
        self.lists = lists
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.sleep = sleep
        self.max_retries = max_retries
        self.calls = 0
        self._last = 0.0

    def page(self, resource: str, params: Json) -> Json:
        for attempt in range(self.max_retries + 1):
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()
            self.calls += 1
            try:
                return self.lists.list_page(resource, params)
            except PaymentsError as exc:
                if exc.kind in ("not_found", "invalid"):
                    raise ListUnreadable(resource, exc) from exc
                if not exc.retryable or attempt == self.max_retries:
                    raise
                self.sleep(min(MAX_BACKOFF_SECONDS, 2.0**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def each(
        self, resource: str, params: Json, *, starting_after: str | None = None
    ) -> Iterator[tuple[list[Json], str | None]]:
        """Every page of a list: (its objects, the id to resume after)."""
        query = {**params, "limit": PAGE_SIZE}
        while True:
            if starting_after:
                query["starting_after"] = starting_after
            page = self.page(resource, query)
            data: list[Json] = list(page.get("data") or [])
            if data:
                starting_after = str(data[-1]["id"])
            yield data, starting_after
            if not page.get("has_more") or not data:
                return


def prefetched(pages: Iterator[T]) -> Iterator[T]:
    """The same pages, the next one fetched on a thread of its own while the
    caller works on this one, so waiting for Stripe overlaps our own work.
    Calls stay one at a time (the pacer is not shared)."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stripe-pages") as pool:
        ahead = pool.submit(next, pages, end)
        while True:
            page = ahead.result()
            if page is end:
                return
            ahead = pool.submit(next, pages, end)
            yield page  # type: ignore[misc]


@dataclass
class SyncResult:
    listed: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    resumed: list[str] = field(default_factory=list)
    unlisted: dict[str, str] = field(default_factory=dict)  # list -> why it was not read


def synthetic_event(event_type: str, obj: Json, *, api_version: str | None) -> Json:
    """A listed object as the event that would have carried it. Its id is
    stable per object, and its `created` is now: the state is Stripe's current."""
    return {
        "id": f"sync_{obj.get('object', 'object')}_{obj['id']}",
        "object": "event",
        "type": event_type,
        "api_version": api_version,
        "created": int(utcnow().timestamp()),
        "livemode": bool(obj.get("livemode")),
        "data": {"object": obj},
    }


def _cursor(database: Database, window: Window, resource: str) -> SyncCursor | None:
    with database.session() as session:
        return session.scalars(
            select(SyncCursor).where(
                SyncCursor.window == window.key, SyncCursor.resource == resource
            )
        ).first()


def _save_cursor(
    session: Session, window: Window, resource: str, starting_after: str | None, *, done: bool
) -> None:
    statement = insert_for(session)(SyncCursor).values(
        window=window.key,
        resource=resource,
        starting_after=starting_after,
        done=done,
        updated_at=utcnow(),
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["window", "resource"],
            set_={"starting_after": starting_after, "done": done, "updated_at": utcnow()},
        )
    )


def forget_cursors(database: Database, window: Window) -> None:
    """A finished window starts from the top next time."""
    with database.session() as session, session.begin():
        session.execute(delete(SyncCursor).where(SyncCursor.window == window.key))


def _sync_list(
    database: Database,
    pacer: Pacer,
    hooks: Webhooks,
    lookup: StripeLookup,
    window: Window,
    resource: Resource,
    params: Json,
    start: str | None,
    api_version: str | None,
    result: SyncResult,
    progress: Callable[[str, int], None],
) -> int:
    """Every page of one list through the handlers; returns how many were listed."""
    count = 0
    # A page of charges at once on PostgreSQL (the same ledger as one by one).
    apply = (
        post_charges
        if resource.name == "charges" and database.dialect == "postgresql"
        else one_by_one
    )
    for objects, after in prefetched(pacer.each(resource.name, params, starting_after=start)):
        events = []
        for obj in objects:
            event_type = resource.event_type(obj)
            if event_type is not None:
                events.append(synthetic_event(event_type, obj, api_version=api_version))
                events.extend(
                    synthetic_event(carried_type, carried, api_version=api_version)
                    for carried_type, carried in resource.carried(obj)
                )
        apply_page(
            database,
            hooks,
            lookup,
            events,
            partial(
                _save_cursor,
                window=window,
                resource=resource.name,
                starting_after=after,
                done=False,
            ),
            apply,
        )
        result.applied += len(events)
        count += len(objects)
        progress(resource.name, count)
    return count


def sync_objects(
    database: Database,
    pacer: Pacer,
    hooks: Webhooks,
    lookup: StripeLookup,
    window: Window,
    *,
    api_version: str | None,
    progress: Callable[[str, int], None] = lambda resource, count: None,
) -> SyncResult:
    """Post what the ledger lacks from every list of RESOURCES in the window,
    resuming where an earlier run for the same window stopped."""
    result = SyncResult()
    for resource in RESOURCES:
        cursor = _cursor(database, window, resource.name)
        if cursor is not None and cursor.done:
            result.resumed.append(resource.name)
            continue
        start = cursor.starting_after if cursor is not None else None
        if start:
            result.resumed.append(resource.name)
        params = {**resource.params}
        created = window.created()
        if created:
            params["created"] = created
        # Expansions refused (localstripe: a refund's failure_balance_transaction):
        # list again without them; the handlers fetch what is then not expanded.
        attempts = [params]
        if "expand" in params:
            attempts.append({k: v for k, v in params.items() if k != "expand"})
        count: int | None = None
        for n, attempt in enumerate(attempts, 1):
            try:
                count = _sync_list(
                    database,
                    pacer,
                    hooks,
                    lookup,
                    window,
                    resource,
                    attempt,
                    start,
                    api_version,
                    result,
                    progress,
                )
                break
            except ListUnreadable as exc:
                if exc.kind == "invalid" and n < len(attempts):
                    continue
                result.unlisted[resource.name] = exc.reason
        if count is None:
            continue
        with database.session() as session, session.begin():
            _save_cursor(session, window, resource.name, None, done=True)
        result.listed[resource.name] = count
    return result
