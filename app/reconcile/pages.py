"""How `stripe sync` applies a page of listed objects: in one transaction
with the cursor past it, through the handlers one by one (`one_by_one`) or,
for charges on PostgreSQL, a page at once (`app.reconcile.charges`); a page
that fails is applied again one object per transaction. No Flask, no
`stripe`; commits here, one transaction per page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.db import Database
from app.payments import StripeLookup, Webhooks

Json = dict[str, Any]


def apply_object(database: Database, hooks: Webhooks, lookup: StripeLookup, event: Json) -> None:
    """One listed object through the handlers, in its own transaction."""
    with database.session() as session, session.begin():
        hooks.apply_event(session, event, lookup)


PageApplier = Callable[[Session, Webhooks, StripeLookup, list[Json]], None]


def one_by_one(session: Session, hooks: Webhooks, lookup: StripeLookup, events: list[Json]) -> None:
    """Each event through the handlers, in order (the caller's transaction)."""
    for event in events:
        hooks.apply_event(session, event, lookup)


def apply_page(
    database: Database,
    hooks: Webhooks,
    lookup: StripeLookup,
    events: list[Json],
    save: Callable[[Session], None],
    apply: PageApplier = one_by_one,
) -> None:
    """A page's objects through the handlers (`apply`: one by one, or a page
    of charges at once, `app.reconcile.charges`) and the cursor past them, in
    one transaction: a run killed at any point resumes after the last page
    whose postings were committed, never between. Should the page fail, it
    is applied again one object per transaction through the handlers (with
    the cursor after the last), so a failure is that object's alone and the
    rest stay posted."""
    try:
        with database.session() as session, session.begin():
            apply(session, hooks, lookup, events)
            save(session)
        return
    except Exception:
        if len(events) <= 1:
            raise
    for event in events:
        apply_object(database, hooks, lookup, event)
    with database.session() as session, session.begin():
        save(session)
