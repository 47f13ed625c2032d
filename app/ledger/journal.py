"""Posting to the journal: Line, Movement and Entry, check_balanced, and `post`
(once per key), which every movement's posting goes through (app.ledger.movements
builds the entries). Append-only: never updates or deletes an entry or a
posting; no Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import insert_for
from app.ledger import totals as daily_totals
from app.ledger.models import (
    ACCOUNTS,
    ENTRY_KINDS,
    JournalEntry,
    JournalPosting,
    LedgerError,
)


@dataclass(frozen=True)
class Line:
    """A posting before it is written: account, currency, signed minor units."""

    account: str
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class Movement:
    """A balance transaction's figures (or, before it is known, the charge's)."""

    currency: str
    amount_minor: int
    fee_minor: int | None = None
    net_minor: int | None = None


def check_balanced(lines: Sequence[Line]) -> None:
    """Raise LedgerError unless the lines sum to zero in every currency."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.account not in ACCOUNTS:
            raise LedgerError(f"unknown account {line.account!r}")
        if line.currency != line.currency.lower() or len(line.currency) != 3:
            raise LedgerError(f"currency {line.currency!r} is not a lower-case ISO code")
        totals[line.currency] += line.amount_minor
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"entry does not balance: {unbalanced}")


@dataclass(frozen=True)
class Entry:
    """A journal entry before it is written: its key (once per key), kind, the
    movement's figures and its lines. The `*_entry` builders below make one
    per kind of movement; `post` writes it (and the seed's bulk path writes
    the same entries in batches)."""

    key: str
    kind: str
    occurred_at: datetime
    stripe_object_id: str
    movement: Movement
    lines: tuple[Line, ...]
    donor_id: int | None = None
    stripe_charge_id: str | None = None
    stripe_balance_transaction_id: str | None = None


def checked_lines(entry: Entry) -> list[Line]:
    """The lines an entry writes (zero lines dropped), after the checks every
    posting passes: a known kind, an aware time, balanced per currency."""
    if entry.kind not in ENTRY_KINDS:
        raise LedgerError(f"unknown entry kind {entry.kind!r}")
    if entry.occurred_at.tzinfo is None:
        raise LedgerError("occurred_at must be timezone-aware")
    kept = [line for line in entry.lines if line.amount_minor != 0]
    check_balanced(kept)
    return kept


def post(session: Session, entry: Entry) -> bool:
    """Post an entry once. Returns True if this call posted it, False if its
    key was already there (a duplicate or a concurrent twin)."""
    kept = checked_lines(entry)
    if entry.kind in ("donation", "membership_payment", "refund", "settlement"):
        daily_totals.lock_object(session, entry.stripe_object_id)
    movement = entry.movement
    statement = (
        insert_for(session)(JournalEntry)
        .values(
            key=entry.key,
            kind=entry.kind,
            occurred_at=entry.occurred_at,
            created_at=utcnow(),
            donor_id=entry.donor_id,
            stripe_object_id=entry.stripe_object_id,
            stripe_charge_id=entry.stripe_charge_id,
            stripe_balance_transaction_id=entry.stripe_balance_transaction_id,
            currency=movement.currency,
            amount_minor=movement.amount_minor,
            fee_minor=movement.fee_minor,
            net_minor=movement.net_minor,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(JournalEntry.id)
    )
    entry_id = session.execute(statement).scalar()
    if entry_id is None:
        return False
    # The daily totals (derived data, app.ledger.totals) move with the entry,
    # in this transaction; a duplicate posted nothing and adds nothing.
    daily_totals.add_entries(session, entry_id, entry_id)
    session.add_all(
        JournalPosting(
            entry_id=entry_id,
            account=line.account,
            currency=line.currency,
            amount_minor=line.amount_minor,
            donor_id=entry.donor_id,
        )
        for line in kept
    )
    session.flush()
    return True


def post_entry(
    session: Session,
    key: str,
    kind: str,
    *,
    occurred_at: datetime,
    stripe_object_id: str,
    movement: Movement,
    lines: Sequence[Line],
    donor_id: int | None = None,
    stripe_charge_id: str | None = None,
    stripe_balance_transaction_id: str | None = None,
) -> bool:
    """`post` with the entry's fields as arguments."""
    return post(
        session,
        Entry(
            key,
            kind,
            occurred_at,
            stripe_object_id,
            movement,
            tuple(lines),
            donor_id,
            stripe_charge_id,
            stripe_balance_transaction_id,
        ),
    )


def entry_exists(session: Session, key: str) -> bool:
    return session.scalar(select(JournalEntry.id).where(JournalEntry.key == key)) is not None
