"""`stripe sync`'s page of charges posted at once (app.reconcile.charges, on
PostgreSQL) makes exactly the ledger and records the charge handler makes one
charge at a time: the same page, in the same database state, through both,
compared row for row (entries, lines, keys, payments, donors, customers,
outbox jobs, refunds, disputes) and by the daily totals; applying the page
again changes nothing; and the Stripe calls made are the same."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from app.clock import frozen_at
from app.db import Base, Database
from app.donors import attach_customer, find_or_create_donor
from app.ledger import totals
from app.payments import PaymentsError
from app.reconcile.charges import plain_charge, post_charges
from app.reconcile.pages import one_by_one
from app.reconcile.sync import synthetic_event
from tests import event_factory as ef
from tests.stripe_helpers import make_event
from webhooks.hooks import webhooks

pytestmark = pytest.mark.postgres

T0 = ef.T0
NOW = datetime.fromtimestamp(T0 + 40 * ef.DAY, UTC)  # the sync runs 40 days after T0


class Lookup:
    """Stripe's answers for what a payload lacks; records every call."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.calls: list[str] = []

    def _get(self, key: str) -> Any:
        self.calls.append(key)
        if key not in self.objects:
            raise PaymentsError("not_found", key)
        return copy.deepcopy(self.objects[key])

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._get(balance_transaction_id)
        return found

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._get(customer_id)
        return found

    def list_refunds(self, *, charge: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get(f"refunds?charge={charge}")
        return found

    def list_invoice_payments(
        self, *, invoice: str | None = None, payment_intent: str | None = None
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get(f"invoice_payments?pi={payment_intent}")
        return found

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise PaymentsError("not_found", name)

        return refused


def settled(
    charge_id: str,
    amount: int,
    *,
    n: int,
    currency: str = "usd",
    txn: dict[str, Any] | str | None = "expanded",
    **fields: Any,
) -> dict[str, Any]:
    created = fields.pop("created", T0 + n * 60)
    if txn == "expanded":
        txn = ef.balance_transaction(
            f"txn_{charge_id}",
            amount=amount,
            fee=ef.fee_for(amount),
            source=charge_id,
            created=created,
            currency=currency,
        )
    fields.setdefault("metadata", {"frequency": "once"})
    return ef.charge(
        charge_id,
        amount=amount,
        created=created,
        currency=currency,
        payment_intent=f"pi_{charge_id}",
        balance_transaction=txn,
        **fields,
    )


def a_page() -> tuple[list[dict[str, Any]], dict[str, Any], set[str]]:
    """Charges as `stripe sync` lists them, Stripe's answers for what they
    lack, and the ids of those the page path posts itself (plain)."""
    eur_txn = ef.balance_transaction(
        "txn_eur", amount=2150, fee=100, source="ch_eur", created=T0 + 5 * 60, currency="usd"
    )
    charges = [
        settled("ch_new", 5000, n=1, customer="cus_1", email="ada@example.org", name="Ada"),
        # the same customer, another email: the customer's donor (no new one)
        settled("ch_same", 1500, n=2, customer="cus_1", email="other@example.org", name="O"),
        # a known donor by email, without a name: given this one
        settled("ch_known", 2500, n=3, customer="cus_3", email="Known@Example.org", name="Kay"),
        # a known customer
        settled("ch_kcus", 700, n=4, customer="cus_known", email="k@example.org", name="K"),
        # converted: a euro charge settled in dollars
        settled(
            "ch_eur",
            2000,
            n=5,
            currency="eur",
            txn=eur_txn,
            customer="cus_5",
            email="e@example.org",
        ),
        settled("ch_jpy", 1000, n=6, currency="jpy", customer="cus_6", email="yen@example.org"),
        # fee not known yet (no balance transaction)
        settled("ch_nofee", 900, n=7, txn=None, customer="cus_7", email="n@example.org"),
        # fee by retrieve (not expanded): the handler's
        settled("ch_ref", 1100, n=8, txn="txn_ch_ref", customer="cus_8", email="r@example.org"),
        # already recorded from a webhook (recognised, not settled)
        settled("ch_web", 3000, n=9, customer="cus_web", email="web@example.org", name="W"),
        # partly refunded, disputed: the handler's
        settled("ch_refd", 4000, n=10, customer="cus_1", amount_refunded=500),
        settled("ch_disp", 4500, n=11, customer="cus_11", email="d@example.org", disputed=True),
        # recent: a receipt is due
        settled(
            "ch_recent",
            1200,
            n=12,
            created=int(NOW.timestamp()) - 3600,
            customer="cus_12",
            email="fresh@example.org",
        ),
        # through our checkout (none found here); then a plain one by its email
        settled(
            "ch_co",
            1300,
            n=13,
            customer="cus_13",
            email="co@example.org",
            metadata={"frequency": "once", "checkout_id": "co_missing"},
        ),
        settled("ch_after_co", 1400, n=14, email="co@example.org", name="Cora"),
        # no customer, no email: no donor
        settled("ch_anon", 600, n=15),
        # an unknown customer without an email: Stripe is asked
        settled("ch_ask", 1600, n=16, customer="cus_16"),
        settled("ch_failed", 1700, n=17, txn=None, customer="cus_1", status="failed"),
        # not from our form: the invoice payments are asked
        settled("ch_nometa", 1800, n=18, customer="cus_18", email="m@example.org", metadata={}),
        # an older shape that says it paid no invoice
        settled("ch_old", 1900, n=19, customer="cus_19", email="old@example.org", old_invoice=None),
        # a new donor without a name, then named by the next charge's email
        settled("ch_shared", 2100, n=20, customer="cus_20", email="shared@example.org"),
        settled("ch_named", 2200, n=21, email="SHARED@example.org ", name="Sam"),
        # partly captured
        settled(
            "ch_partial",
            3000,
            n=22,
            txn=ef.balance_transaction(
                "txn_partial", amount=2000, fee=88, source="ch_partial", created=T0 + 22 * 60
            ),
            customer="cus_22",
            email="p@example.org",
            amount_captured=2000,
        ),
    ]
    answers: dict[str, Any] = {
        "txn_ch_ref": ef.balance_transaction(
            "txn_ch_ref", amount=1100, fee=ef.fee_for(1100), source="ch_ref", created=T0 + 480
        ),
        "refunds?charge=ch_refd": [
            ef.refund(
                "re_refd",
                charge_id="ch_refd",
                amount=500,
                created=T0 + 700,
                balance_transaction=ef.balance_transaction(
                    "txn_re_refd",
                    amount=-500,
                    fee=0,
                    source="re_refd",
                    created=T0 + 700,
                    type="refund",
                ),
            )
        ],
        "cus_16": {"id": "cus_16", "object": "customer", "email": "asked@example.org"},
        "invoice_payments?pi=pi_ch_nometa": [],
    }
    plain = {
        "ch_new", "ch_same", "ch_known", "ch_kcus", "ch_eur", "ch_jpy", "ch_nofee",
        "ch_web", "ch_after_co", "ch_anon", "ch_old", "ch_shared", "ch_named", "ch_partial",
        "ch_ask",  # by its payload; the ledger knows no donor for it, so the handler's
    }  # fmt: skip
    return charges, answers, plain


def arrange(database: Database, lookup: Lookup) -> None:
    """A donor known by email (no name), one by a customer, and a charge
    recorded by its webhook (recognised; its fee not known then)."""
    hooks = webhooks()
    with database.session() as session, session.begin():
        find_or_create_donor(session, "known@example.org")
        attach_customer(
            session,
            find_or_create_donor(session, "k2@example.org", "K2"),
            "cus_known",
            livemode=False,
        )
        webhook_charge = settled(
            "ch_web", 3000, n=9, txn=None, customer="cus_web", email="web@example.org", name="W"
        )
        event = make_event("charge.succeeded", webhook_charge, created=T0 + 9 * 60 + 1)
        hooks.apply_event(session, event, lookup)


def truncate(database: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.session() as session, session.begin():
        session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def snapshot(session: Session) -> dict[str, Any]:
    """Every table's rows without their ids: a donor as its email, an entry
    as its key; the daily totals as readers sum them."""
    donors = {i: e for i, e in session.execute(text("SELECT id, email FROM donors"))}
    keys = {i: k for i, k in session.execute(text("SELECT id, key FROM journal_entries"))}
    found: dict[str, Any] = {}
    skipped = {"ledger_daily_changes", "ledger_daily_totals"}
    for table in Base.metadata.sorted_tables:
        if table.name in skipped:
            continue
        found[table.name] = sorted(
            (repr(row) for row in _rows(session, table, donors, keys)), key=str
        )
    found["daily totals"] = totals.stored(session)
    found["totals' differences"] = totals.differences(session)
    return found


def _rows(
    session: Session, table: Table, donors: dict[int, str], keys: dict[int, str]
) -> list[dict[str, Any]]:
    rows = []
    for row in session.execute(select(table)).mappings():
        values = {k: v for k, v in row.items() if k != "id"}
        if "donor_id" in values:
            values["donor_id"] = donors.get(values["donor_id"])
        if "entry_id" in values:
            values["entry_id"] = keys.get(values["entry_id"])
        rows.append(values)
    return rows


def test_a_page_posted_at_once_is_the_ledger_the_handler_makes_charge_by_charge(
    postgres_url: str,
) -> None:
    database = Database(postgres_url)
    hooks = webhooks()
    charges, answers, plain = a_page()
    with frozen_at(NOW):
        events = [synthetic_event("charge.updated", c, api_version=None) for c in charges]
    assert {e["data"]["object"]["id"] for e in events if plain_charge(e, hooks.charge)} == plain

    outcomes = {}
    try:
        for name, apply in (("one by one", one_by_one), ("a page at once", post_charges)):
            truncate(database)
            lookup = Lookup(answers)
            with frozen_at(NOW):
                arrange(database, lookup)
                with database.session() as session, session.begin():
                    apply(session, hooks, lookup, copy.deepcopy(events))
                with database.session() as session:
                    after = snapshot(session)
                # Applied again: nothing changes.
                with database.session() as session, session.begin():
                    apply(session, hooks, lookup, copy.deepcopy(events))
                with database.session() as session:
                    assert snapshot(session) == after, name
            outcomes[name] = (after, lookup.calls)
    finally:
        truncate(database)
        database.dispose()

    one, batch = outcomes["one by one"], outcomes["a page at once"]
    assert one[0]["journal_entries"], "nothing was posted"
    assert one[0]["totals' differences"] == []
    for table in one[0]:
        assert batch[0][table] == one[0][table], table
    assert batch[1] == one[1]  # the same Stripe calls
