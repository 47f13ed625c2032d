"""The posting path (app.ledger.post) keeps the daily totals exact: postings
about one Stripe object in any order and at the same time from several
workers, settlements in another currency and on another day, duplicates."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import ledger
from app.db import Database
from app.ledger import BalanceTxn
from app.ledger import totals as ledger_totals

DAY = datetime(2025, 3, 30, 23, 30, tzinfo=UTC)  # settled two days later, after midnight


def recognise(session: Session, n: int, *, currency: str = "eur", amount: int = 4000) -> bool:
    return ledger.recognise_payment(
        session,
        charge_id=f"ch_post_{n}",
        kind="donation",
        currency=currency,
        amount_minor=amount,
        occurred_at=DAY + timedelta(minutes=n),
        donor_id=None,
    )


def settle(session: Session, n: int, *, currency: str = "eur", amount: int = 4000) -> bool:
    settled = amount * 11 // 10  # converted into dollars
    return ledger.settle(
        session,
        BalanceTxn(
            f"txn_post_{n}",
            "charge",
            "usd",
            settled,
            150,
            settled - 150,
            DAY + timedelta(days=2, minutes=n),
        ),
        object_id=f"ch_post_{n}",
        object_currency=currency,
        object_amount_minor=amount,
        charge_id=f"ch_post_{n}",
        donor_id=None,
    )


def refund(session: Session, n: int) -> bool:
    return ledger.recognise_refund(
        session,
        refund_id=f"re_post_{n}",
        charge_id=f"ch_post_{n}",
        currency="eur",
        amount_minor=1000,
        occurred_at=DAY + timedelta(days=1, minutes=n),
        donor_id=None,
    )


def exact(database: Database) -> list[ledger_totals.DayTotal]:
    with database.session() as session:
        assert ledger_totals.differences(session) == []
        assert ledger.verify(session) == []
        return ledger_totals.stored(session)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    found = Database(db_url)
    yield found
    found.dispose()


@pytest.mark.parametrize("order", ["movement first", "settlement first"])
def test_a_settlement_moves_the_row_in_the_movements_day_from_recognised_to_settled(
    database: Database, order: str
) -> None:
    with database.session() as session:
        steps: list[Callable[[Session, int], bool]] = [recognise, settle]
        if order == "settlement first":
            steps.reverse()
        for step in steps:
            assert step(session, 1)
            assert not step(session, 1)  # once per key: a duplicate adds nothing
            session.commit()

    totals = exact(database)
    # one row, in dollars (the settlement's figures), on the day it was given
    assert [
        (t.day_utc, t.currency, t.kind, t.amount_minor, t.fee_minor, t.row_count) for t in totals
    ] == [(date(2025, 3, 30), "usd", "donation", 4400, 150, 1)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_movement_and_its_settlement_posted_at_the_same_time_by_two_workers_count_once(
    database: Database,
) -> None:
    pairs = 24
    errors: list[BaseException] = []

    def worker(step: Callable[[Session, int], bool], barrier: threading.Barrier, n: int) -> None:
        barrier.wait()
        for _attempt in range(10):  # as the worker would: roll back, try again
            try:
                with database.session() as session:
                    step(session, n)
                    session.commit()
                return
            except DBAPIError:
                continue
            except BaseException as exc:
                errors.append(exc)
                return
        errors.append(RuntimeError(f"{step.__name__} {n} kept failing"))

    for n in range(pairs):
        barrier = threading.Barrier(3)
        threads = [
            threading.Thread(target=worker, args=(step, barrier, n))
            for step in (recognise, settle, refund)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []

    totals = {(t.currency, t.kind): t for t in exact(database)}
    assert totals[("usd", "donation")].amount_minor == pairs * 4400
    assert totals[("usd", "donation")].row_count == pairs
    assert totals[("eur", "refund")].amount_minor == -pairs * 1000
    assert ("eur", "donation") not in totals
