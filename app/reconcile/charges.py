"""A page of `stripe sync`'s charges posted at once on PostgreSQL: the
historical gifts of a backfill in a few statements per page
(`app.ledger.batch`) instead of a few per charge, with the ledger and records
the webhook handlers' `charge.updated` makes of each, one after another.

Only a *plain* charge takes this path: succeeded and captured, nothing
refunded or disputed, a one-time gift by the payload alone (our form's
`frequency: once`, or an older shape's `invoice: null`), not through our
checkout, its balance transaction expanded or not yet made, and too old for
a receipt (`receipts.is_news`). For it the handler does exactly this: find
the donor (the customer's; else by email, created if new, a missing name
filled in; the customer attached unless it was how the donor was found),
record the payment, recognise it (`payment_entry`) and settle it
(`settlement_entry`), each key once. Every other charge, and a plain one the
ledger already has a payment for (or whose donor only Stripe could name),
goes through the handler itself (`Webhooks.apply_event`), in its place in
the page's order: the plain ones before it are written first, and those
after it are read again. So the ledger is the one the handler makes, charge
by charge (tests/integration/test_stripe_sync_batch.py compares the two).

What a charge's payload says is read by the handlers' own reading
(`Webhooks.charge`, webhooks.mapping.charge), so the two paths cannot drift
apart. No Flask, no `stripe`, no commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app import receipts
from app.clock import utcnow
from app.donors import normalise_email
from app.ledger import (
    BalanceTxn,
    Entry,
    LedgerError,
    batch,
    checked_lines,
    payment_entry,
    settlement_entry,
)
from app.payments import ChargeReading, StripeLookup, Webhooks

Json = dict[str, Any]


@dataclass(frozen=True)
class PlainCharge:
    """What the handler reads of a plain charge (see the module docstring)."""

    id: str
    amount_minor: int
    currency: str
    created_at: datetime
    livemode: bool
    event_livemode: bool  # what a customer is attached with (the handler's ctx.livemode)
    customer_id: str | None
    email: str | None
    name: str | None
    payment_intent_id: str | None
    txn: BalanceTxn | None
    told_at: datetime  # the event's `created`

    @property
    def keys(self) -> tuple[str, ...]:
        charge = (f"charge:{self.id}",)
        return charge if self.txn is None else (*charge, f"balance_transaction:{self.txn.id}")


def _at(unix: Any) -> datetime:
    return datetime.fromtimestamp(int(unix), UTC)


def plain_charge(event: Json, read_charge: Callable[[Json], ChargeReading]) -> PlainCharge | None:
    """The charge of a `charge.updated` event if it is plain, else None.
    `read_charge` is the handlers' own reading of a charge
    (`Webhooks.charge`), so both paths see the same facts."""
    if event.get("type") != "charge.updated":
        return None
    charge = read_charge(event["data"]["object"])
    if not charge.recognisable:
        return None
    if charge.amount_refunded_minor or charge.refunded or charge.disputed or charge.refunds:
        return None
    if charge.checkout_id:
        return None
    if charge.invoice_known:
        if charge.invoice_id is not None:
            return None
    elif charge.frequency != "once":
        return None
    reference = charge.balance_transaction
    if reference is not None and reference.expanded is None:
        return None  # the handler would fetch it
    told_at = _at(event["created"])
    if receipts.is_news(charge.created_at, told_at):
        return None
    return PlainCharge(
        id=charge.id,
        amount_minor=charge.amount_minor,
        currency=charge.currency,
        created_at=charge.created_at,
        livemode=charge.livemode,
        event_livemode=bool(event.get("livemode")),
        customer_id=charge.customer_id,
        email=charge.email,
        name=charge.name,
        payment_intent_id=charge.payment_intent_id,
        txn=None if reference is None else reference.expanded,
        told_at=told_at,
    )


@dataclass
class _Donor:
    """A donor as the page sees it while planning: known (an id) or new."""

    email: str | None
    name: str | None
    id: int | None = None
    named: bool = False  # a known donor given its missing name


@dataclass
class _Plan:
    """What the plain charges before the first that cannot be planned write."""

    new_donors: list[_Donor]
    named: list[_Donor]
    links: list[tuple[str, _Donor, bool]]
    charges: list[tuple[PlainCharge, _Donor | None]]
    stop: int  # index of the first charge not planned (len: all were)


def _plan(charges: Sequence[PlainCharge], state: batch.PageState) -> _Plan:
    """The handler's donor and payment steps for each charge in order, on what
    the ledger holds (`state`) and what the charges before it made."""
    known: dict[int, _Donor] = {}

    def donor_of(found: batch.KnownDonor) -> _Donor:
        if found.id not in known:
            known[found.id] = _Donor(None, found.name, found.id)
        return known[found.id]

    by_customer = {c: donor_of(d) for c, d in state.by_customer.items()}
    by_email = {e: donor_of(d) for e, d in state.by_email.items()}
    plan = _Plan([], [], [], [], len(charges))
    seen_keys: set[str] = set()
    for n, charge in enumerate(charges):
        if charge.id in state.payments or seen_keys.intersection(charge.keys):
            plan.stop = n
            return plan
        donor: _Donor | None = None
        linked = False
        if charge.customer_id:
            donor = by_customer.get(charge.customer_id)
            linked = donor is not None
        if donor is None and charge.email:
            address = normalise_email(charge.email)
            donor = by_email.get(address)
            if donor is None:
                donor = _Donor(address, charge.name or None)
                by_email[address] = donor
                plan.new_donors.append(donor)
            elif charge.name and not donor.name:
                donor.name = charge.name
                if donor.id is not None and not donor.named:
                    donor.named = True
                    plan.named.append(donor)
        if donor is None and charge.customer_id:
            plan.stop = n  # the handler would ask Stripe for the customer's email
            return plan
        customer = charge.customer_id
        if donor is not None and customer and not linked and customer not in by_customer:
            by_customer[customer] = donor  # first writer wins
            plan.links.append((customer, donor, charge.event_livemode))
        seen_keys.update(charge.keys)
        plan.charges.append((charge, donor))
    return plan


def _entries(charge: PlainCharge, donor_id: int | None, posted: frozenset[str]) -> list[Entry]:
    entries = []
    if f"charge:{charge.id}" not in posted:
        entries.append(
            payment_entry(
                charge_id=charge.id,
                kind="donation",
                currency=charge.currency,
                amount_minor=charge.amount_minor,
                occurred_at=charge.created_at,
                donor_id=donor_id,
            )
        )
    if charge.txn is not None and f"balance_transaction:{charge.txn.id}" not in posted:
        entries.append(
            settlement_entry(
                charge.txn,
                object_id=charge.id,
                object_currency=charge.currency,
                object_amount_minor=charge.amount_minor,
                charge_id=charge.id,
                donor_id=donor_id,
            )
        )
    return entries


def _write(session: Session, plan: _Plan, posted: frozenset[str]) -> None:
    ids = batch.insert_donors(session, [(d.email or "", d.name) for d in plan.new_donors])
    for new in plan.new_donors:
        new.id = ids[new.email or ""]
    batch.name_donors(session, [(d.id, d.name) for d in plan.named if d.id and d.name])
    batch.attach_customers(
        session, [(customer, d.id, live) for customer, d, live in plan.links if d.id is not None]
    )
    payments = []
    entries: list[Entry] = []
    for charge, donor in plan.charges:
        donor_id = donor.id if donor is not None else None
        payments.append(
            {
                "stripe_charge_id": charge.id,
                "stripe_payment_intent_id": charge.payment_intent_id,
                "stripe_invoice_id": None,
                "stripe_subscription_id": None,
                "stripe_customer_id": charge.customer_id,
                "donor_id": donor_id,
                "checkout_id": None,
                "kind": "once",
                "amount_minor": charge.amount_minor,
                "currency": charge.currency,
                "status": "succeeded",
                "livemode": charge.livemode,
                "amount_refunded_minor": 0,
                "amount_refunded_at": charge.told_at,
                "stripe_created_at": charge.created_at,
                "created_at": None,
                "updated_at": None,
            }
        )
        entries.extend(_entries(charge, donor_id, posted))
    now = utcnow()
    for payment in payments:
        payment["created_at"] = payment["updated_at"] = now
    batch.insert_payments(session, payments)
    batch.post_entries(session, entries)


def _buildable(charge: PlainCharge) -> bool:
    """Whether its entries can be built (the handler would raise otherwise:
    it then goes through the handler, which raises as before)."""
    try:
        for entry in _entries(charge, None, frozenset()):
            checked_lines(entry)
    except LedgerError:
        return False
    return True


def post_charges(
    session: Session, hooks: Webhooks, lookup: StripeLookup, events: Sequence[Json]
) -> None:
    """Apply a page of `charge.updated` events (in order, in the caller's
    transaction) as the handler would one by one: plain charges a run at a
    time through `app.ledger.batch`, the rest through the handler."""
    items = [(event, plain_charge(event, hooks.charge)) for event in events]
    items = [(e, c if c is not None and _buildable(c) else None) for e, c in items]
    n = 0
    while n < len(items):
        event, charge = items[n]
        if charge is None:
            hooks.apply_event(session, event, lookup)
            n += 1
            continue
        end = n
        while end < len(items) and items[end][1] is not None:
            end += 1
        run = [c for _, c in items[n:end] if c is not None]
        batch.lock_charges(session, [c.id for c in run])
        state = batch.read_state(
            session,
            charge_ids=[c.id for c in run],
            keys=[key for c in run for key in c.keys],
            customers=sorted({c.customer_id for c in run if c.customer_id}),
            emails=sorted({normalise_email(c.email) for c in run if c.email}),
        )
        plan = _plan(run, state)
        _write(session, plan, state.posted)
        session.expire_all()  # records the handler loaded earlier may have changed
        n += plan.stop
        if n == end:
            continue
        # The first charge not planned, and those after it the ledger already
        # has a payment for (still so: records only grow), through the handler.
        hooks.apply_event(session, items[n][0], lookup)
        n += 1
        while n < end and (charge := items[n][1]) is not None and charge.id in state.payments:
            hooks.apply_event(session, items[n][0], lookup)
            n += 1


__all__ = ["PlainCharge", "plain_charge", "post_charges"]
