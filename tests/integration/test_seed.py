"""`donations dev seed`: fake but realistic data, posted by the ledger's rules,
on both backends. The bulk path must write exactly the entries the ledger's
own per-entry functions write."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

from flask.testing import FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import ledger
from app.cli import main
from app.clock import frozen_at
from app.donate.models import Checkout
from app.donors import Donor
from app.ledger import JournalEntry
from app.ledger.records import Dispute, Membership, Payment, Payout, Refund

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_RUN_TAG = re.compile(r"(sd\d+x\d+)(\d{9})")


def _seed(runner: FlaskCliRunner, *args: str) -> str:
    with frozen_at(NOW):
        result = runner.invoke(main, ["dev", "seed", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _run_tags(db: Session) -> set[str]:
    db.rollback()  # a fresh snapshot: the CLI committed in its own session
    return {m.group(1) for m in map(_RUN_TAG.search, ledger.entries_by_key(db)) if m}


def _journal_of_run(db: Session, tag: str) -> dict[str, tuple[object, ...]]:
    """The entries of one seeding run, with the run's id prefix taken out."""
    db.rollback()

    def untagged(value: str) -> str:
        return _RUN_TAG.sub(lambda m: m.group(2), value)

    journal = {}
    for key, (kind, object_id, postings) in ledger.entries_by_key(db).items():
        found = _RUN_TAG.search(key)
        if found is not None and found.group(1) == tag:
            journal[untagged(key)] = (kind, untagged(object_id), postings)
    return journal


def test_seeding_fills_every_kind_of_record_and_the_ledger_verifies(
    runner: FlaskCliRunner, db: Session
) -> None:
    output = _seed(runner, "--payments", "1500", "--seed", "3", "--months", "24")
    assert "seeded 1,500 payments" in output

    assert db.scalar(select(func.count(Payment.id))) == 1500
    kinds = Counter(db.scalars(select(JournalEntry.kind)))
    assert kinds["donation"] + kinds["membership_payment"] == 1500
    assert kinds["settlement"] >= 1500  # every payment and refund settled with its fee
    for kind in ("donation", "membership_payment", "refund", "dispute", "payout", "stripe_fee"):
        assert kinds[kind] > 0, kind
    currencies = set(db.scalars(select(Payment.currency).distinct()))
    assert currencies == {"usd", "eur", "gbp", "jpy"}
    # Two partial refunds on one charge are two entries.
    per_charge = Counter(db.scalars(select(Refund.stripe_charge_id)))
    assert max(per_charge.values()) == 2
    assert {"won", "lost"} <= set(db.scalars(select(Dispute.outcome)))
    assert {"active", "canceled", "past_due"} <= set(db.scalars(select(Membership.status)))
    assert {"month", "year"} <= set(db.scalars(select(Membership.interval)))
    assert {"complete", "expired"} <= set(db.scalars(select(Checkout.status)))
    assert db.scalar(select(func.count(Payout.id))) == kinds["payout"]
    assert db.scalar(select(func.count(Checkout.id).filter(Checkout.campaign.is_not(None)))) > 0
    emails = set(db.scalars(select(Donor.email)))
    assert all(email.endswith("@example.org") for email in emails)
    assert all(entry.occurred_at <= NOW for entry in db.scalars(select(JournalEntry)))

    assert ledger.verify(db) == []
    summary = ledger.summary(db)
    assert set(summary["currencies"]) == {"usd", "eur", "gbp", "jpy"}
    assert sum(c["payments"] for c in summary["currencies"].values()) == 1500
    verified = runner.invoke(main, ["ledger", "verify"])
    assert verified.exit_code == 0, verified.output


def test_the_bulk_path_writes_the_same_entries_as_the_ledgers_own_functions(
    runner: FlaskCliRunner, db: Session
) -> None:
    _seed(runner, "--payments", "150", "--seed", "5", "--exact")
    (exact_tag,) = _run_tags(db)
    exact = _journal_of_run(db, exact_tag)

    _seed(runner, "--payments", "150", "--seed", "5", "--batch", "40")
    (bulk_tag,) = _run_tags(db) - {exact_tag}
    bulk = _journal_of_run(db, bulk_tag)

    assert len(exact) > 300
    assert bulk == exact
    assert ledger.verify(db) == []
    # The ids the bulk path chose leave the sequences ready for ordinary inserts.
    _seed(runner, "--payments", "3", "--seed", "6", "--exact")
    db.rollback()
    assert db.scalar(select(func.count(Payment.id))) == 303


def test_seed_refuses_a_payment_count_below_one(runner: FlaskCliRunner) -> None:
    result = runner.invoke(main, ["dev", "seed", "--payments", "0"])
    assert result.exit_code == 2
    assert "--payments" in result.output
