"""A stateful property test (hypothesis RuleBasedStateMachine) of the pipeline
from the webhook route to the ledger: random sequences of gifts, memberships
and their renewals, failed renewals paid on retry, partial refunds, disputes
won and lost, payouts, with duplicates and reorderings (events held back and
delivered in any order). Every event is signed and posted to the real route,
then the worker's drain applies what is due.

After every step: every entry balances and the daily totals equal the journal
(`ledger.verify`), and the ledger holds nothing the model does not (no row
invented or doubled). Whenever nothing is held back: the ledger's rows equal
the model's exactly, and each donor's statement totals equal their charges
minus refunds and disputes.

In-process on SQLite (a fresh copy of the migrated database per example).
Examples: 200 in CI, 5,000 with SLOW_TESTS=1.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from app import create_app, ledger
from app.db import Database
from app.donors import Donor
from app.ledger.models import JournalPosting
from app.receipts.statements import statement_for
from tests import event_factory as ef
from tests.conftest import STRIPE_TEST_KEY, WEBHOOK_SECRET
from tests.integration.test_handlers import add_checkout
from tests.stripe_helpers import post_event
from webhooks.worker import RetryPolicy, drain

SLOW = bool(os.environ.get("SLOW_TESTS"))
EXAMPLES = int(os.environ.get("MACHINE_EXAMPLES") or (5_000 if SLOW else 200))
POLICY = RetryPolicy(max_attempts=50, base_delay_seconds=0, max_delay_seconds=0)

# A row as the model knows it: kind, donor email, amount, fee, Stripe id.
Row = tuple[str, str | None, int, int | None, str]


ROWS = ledger.rows_query()  # the ledger CSV's rows, built once
UNBALANCED = (
    select(JournalPosting.entry_id, JournalPosting.currency)
    .group_by(JournalPosting.entry_id, JournalPosting.currency)
    .having(func.sum(JournalPosting.amount_minor) != 0)
)


@pytest.mark.timeout(7200 if SLOW else 600)
def test_the_pipeline_keeps_the_ledger_equal_to_a_simple_model(
    sqlite_template: Path, tmp_path: Path, stripe_http: responses.RequestsMock
) -> None:
    path = tmp_path / "machine.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app(
        {
            "APP_ENV": "test",
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{path}",
            "SECRET_KEY": "test-secret-key",
            "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_MAX_NETWORK_RETRIES": 0,
        }
    )
    database: Database = app.extensions["donations.db"]

    def fresh_database() -> None:
        # Between examples: every connection closed, the file replaced by the
        # migrated template (the journal refuses DELETE, as it should).
        database.dispose()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(sqlite_template, path)

    class Pipeline(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            fresh_database()
            stripe_http.reset()
            stripe_http.add_passthru("http://127.0.0.1")
            self.app: Flask = app
            self.client = app.test_client()
            self.held: list[dict[str, Any]] = []  # sent to nobody yet
            self.sent: list[dict[str, Any]] = []
            self.expected: Counter[Row] = Counter()
            self.charges: dict[str, dict[str, Any]] = {}  # refundable or disputable
            self.memberships: dict[str, tuple[ef.Scenario, int]] = {}  # tag: periods sent
            self.net: dict[str, int] = defaultdict(int)
            self.n = 0

        # -- the model's helpers ------------------------------------------------

        def tag(self, kind: str) -> str:
            self.n += 1
            return f"{kind}{self.n}"

        def start(self) -> int:
            return ef.T0 + self.n * 3600

        def after(self, charge_obj: dict[str, Any]) -> int:
            """When a refund or dispute of the charge happens: after it settled."""
            return max(self.start(), charge_obj["created"] + 3600)

        def hold(self, scenario: ef.Scenario, events: list[dict[str, Any]] | None = None) -> None:
            scenario.stub(stripe_http)
            self.held.extend(scenario.events if events is None else events)

        def charge_row(self, charge_obj: dict[str, Any], email: str, kind: str) -> None:
            amount = charge_obj["amount"]
            self.expected[(kind, email, amount, ef.fee_for(amount), charge_obj["id"])] += 1
            self.net[email] += amount

        def checkout(self, checkout_id: str, email: str, frequency: str, amount: int) -> None:
            with database.session() as session:
                add_checkout(
                    session,
                    checkout_id,
                    email,
                    frequency=frequency,
                    amount=amount,
                    session_id=f"cs_{checkout_id[3:]}",
                )
                session.commit()

        # -- what donors and Stripe do -----------------------------------------

        @rule(amount=st.integers(100, 500_000))
        def gift(self, amount: int) -> None:
            tag = self.tag("gift")
            scenario = ef.one_time_donation(tag, amount=amount, start=self.start())
            facts = scenario.facts
            self.checkout(facts["checkout_id"], facts["email"], "once", amount)
            self.hold(scenario)
            self.charge_row(facts["charge_object"], facts["email"], "donation")
            self.charges[facts["charge"]] = {**facts["charge_object"], "email": facts["email"]}

        @rule(amount=st.integers(100, 100_000))
        def membership(self, amount: int) -> None:
            tag = self.tag("member")
            scenario = ef.membership(tag, amount=amount, start=self.start(), renewals=2)
            facts = scenario.facts
            self.checkout(facts["checkout_id"], facts["email"], "month", amount)
            self.memberships[tag] = (scenario, 0)
            self.release_period(tag)

        def release_period(self, tag: str) -> None:
            scenario, period = self.memberships[tag]
            facts = scenario.facts
            begin = scenario.events[0]["created"] - 1 + period * 30 * ef.DAY
            end = begin + 30 * ef.DAY
            self.hold(scenario, [e for e in scenario.events if begin <= e["created"] < end])
            charge_obj = facts["charge_objects"][period]
            self.charge_row(charge_obj, facts["email"], "membership_payment")
            self.charges[charge_obj["id"]] = {**charge_obj, "email": facts["email"]}
            self.memberships[tag] = (scenario, period + 1)

        @precondition(lambda self: any(p <= 2 for _, p in self.memberships.values()))
        @rule(data=st.data())
        def renewal(self, data: st.DataObject) -> None:
            due = sorted(t for t, (_, p) in self.memberships.items() if p <= 2)
            self.release_period(data.draw(st.sampled_from(due)))

        @rule(amount=st.integers(100, 100_000))
        def failed_renewal_paid_on_retry(self, amount: int) -> None:
            tag = self.tag("retry")
            scenario = ef.failed_renewal_then_retry(tag, amount=amount, start=self.start())
            facts = scenario.facts
            self.checkout(facts["checkout_id"], facts["email"], "month", amount)
            self.hold(scenario)
            for charge_id in (facts["charges"][0], facts["renewal_charge"]):
                self.expected[
                    ("membership_payment", facts["email"], amount, ef.fee_for(amount), charge_id)
                ] += 1
                self.net[facts["email"]] += amount

        @precondition(lambda self: self.charges)
        @rule(data=st.data())
        def partial_refund(self, data: st.DataObject) -> None:
            charge_id = data.draw(st.sampled_from(sorted(self.charges)))
            charge_obj = self.charges.pop(charge_id)
            amount = data.draw(st.integers(1, charge_obj["amount"] - 1))
            tag = self.tag("refund")
            email = charge_obj.pop("email")
            scenario = ef.partial_refunds(
                charge_obj, [amount], start=self.after(charge_obj), tag=tag
            )
            self.hold(scenario)
            self.expected[("refund", email, -amount, 0, f"re_{tag}_0")] += 1
            self.net[email] -= amount

        @precondition(lambda self: self.charges)
        @rule(data=st.data(), won=st.booleans())
        def dispute(self, data: st.DataObject, won: bool) -> None:
            charge_id = data.draw(st.sampled_from(sorted(self.charges)))
            charge_obj = self.charges.pop(charge_id)
            amount, email = charge_obj["amount"], charge_obj["email"]
            tag = self.tag("dispute")
            make = ef.dispute_won if won else ef.dispute_lost
            self.hold(make(charge_id, amount, start=self.after(charge_obj), tag=tag))
            self.expected[("dispute", email, -amount, ef.DISPUTE_FEE, f"du_{tag}")] += 1
            self.net[email] -= amount
            if won:
                self.expected[
                    ("dispute_reversal", email, amount, -ef.DISPUTE_FEE, f"du_{tag}")
                ] += 1
                self.net[email] += amount

        @rule(amount=st.integers(1, 1_000_000), fee=st.sampled_from([0, 200]))
        def payout(self, amount: int, fee: int) -> None:
            tag = self.tag("payout")
            self.hold(ef.payout_paid(tag, amount, start=self.start(), stripe_fee=fee))
            self.expected[("payout", None, -amount, 0, f"po_{tag}")] += 1
            if fee:
                self.expected[("stripe_fee", None, -fee, 0, f"txn_fee_{tag}")] += 1

        # -- deliveries: any order, again and again ------------------------------

        def deliver(self, event: dict[str, Any]) -> None:
            response = post_event(self.client, event, WEBHOOK_SECRET)
            assert response.status_code == 200, response.get_data(as_text=True)
            self.sent.append(event)

        def work(self) -> None:
            payments = self.app.extensions["donations.payments"]
            for outcome in drain(database, payments, POLICY):
                assert outcome.status == "processed", outcome

        @precondition(lambda self: self.held)
        @rule(data=st.data(), count=st.integers(1, 8))
        def deliver_some(self, data: st.DataObject, count: int) -> None:
            for _ in range(min(count, len(self.held))):
                index = data.draw(st.integers(0, len(self.held) - 1))
                self.deliver(self.held.pop(index))
            self.work()

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def deliver_all_shuffled(self, data: st.DataObject) -> None:
            order = data.draw(st.permutations(self.held))
            self.held = []
            for event in order:
                self.deliver(event)
            self.work()

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def duplicate(self, data: st.DataObject) -> None:
            self.deliver(data.draw(st.sampled_from(self.sent)))
            self.work()

        # -- invariants ---------------------------------------------------------

        @invariant()
        def the_ledger_agrees_with_the_model(self) -> None:
            with database.session(immediate=False) as session:
                # Every entry balances, in each currency.
                assert session.execute(UNBALANCED).all() == []
                found = [
                    (r.kind, r.donor_email, r.amount_minor, r.fee_minor, r.stripe_id)
                    for r in map(ledger.row_from, session.execute(ROWS))
                ]
                # Nothing the model does not expect: no row invented or doubled
                # (its fee, or its donor, may still be on their way).
                allowed = Counter((r[0], r[2], r[4]) for r in self.expected.elements())
                extra = Counter((r[0], r[2], r[4]) for r in found) - allowed
                assert extra == Counter(), extra
                if self.held:
                    return
                # Nothing held back: exactly the model, sound, and each donor's
                # statement is their charges minus refunds and disputes.
                assert Counter(found) == self.expected
                assert ledger.verify(session) == []
                for email, net in self.net.items():
                    donor = session.scalars(select(Donor).where(Donor.email == email)).one()
                    statement = statement_for(session, donor.id, 2026, ZoneInfo("UTC"))
                    assert statement is not None
                    assert sum(t.net_minor for t in statement.totals) == net, email

    try:
        run_state_machine_as_test(
            Pipeline,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=10 if not SLOW else 20,
                deadline=None,
                # MACHINE_NO_SHRINK=1: report the first failure as found (faster)
                phases=tuple(Phase)[:3] if os.environ.get("MACHINE_NO_SHRINK") else tuple(Phase),
                derandomize=not SLOW,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        database.dispose()
