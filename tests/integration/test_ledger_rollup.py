"""The daily totals' roll-up (app.ledger.rollup): postings append their
changes, the roll-up folds the committed ones into the per-day sums, and the
totals readers see (stored, the finance reports, `ledger verify`) equal the
journal before, during and after it: a posting on a day already rolled up,
a back-dated posting, a settlement in another currency, a roll-up racing
postings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import ledger
from app.db import Database
from app.finance import reports
from app.ledger import BalanceTxn
from app.ledger import totals as ledger_totals
from app.ledger.rollup import open_changes, roll_up
from app.ledger.totals import LedgerDailyTotal

DAY = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    found = Database(db_url)
    yield found
    found.dispose()


def give(session: Session, n: int, *, at: datetime = DAY, currency: str = "usd") -> None:
    ledger.recognise_payment(
        session,
        charge_id=f"ch_roll_{n}",
        kind="donation",
        currency=currency,
        amount_minor=1000 + n,
        occurred_at=at,
        donor_id=None,
    )


def settle(session: Session, n: int, *, currency: str = "usd", into: str = "usd") -> None:
    settled = (1000 + n) * 11 // 10 if into != currency else 1000 + n
    ledger.settle(
        session,
        BalanceTxn(f"txn_roll_{n}", "charge", into, settled, 59, settled - 59, DAY + timedelta(2)),
        object_id=f"ch_roll_{n}",
        object_currency=currency,
        object_amount_minor=1000 + n,
        charge_id=f"ch_roll_{n}",
        donor_id=None,
    )


def exact(session: Session) -> list[ledger_totals.DayTotal]:
    assert ledger_totals.differences(session) == []
    assert ledger.verify(session) == []
    return ledger_totals.stored(session)


def rolled(session: Session) -> dict[tuple[date, str, str], tuple[int, int]]:
    t = LedgerDailyTotal
    return {
        (day, currency, kind): (amount, rows)
        for day, currency, kind, amount, rows in session.execute(
            select(t.day_utc, t.currency, t.kind, t.amount_minor, t.row_count)
        )
        if rows or amount
    }


def test_a_posting_on_a_day_already_rolled_up_adds_to_it(database: Database) -> None:
    with database.session() as session:
        give(session, 1)
        session.commit()
        assert open_changes(session) == 1
        assert roll_up(session) == 1
        session.commit()
        assert open_changes(session) == 0
        give(session, 2, at=DAY + timedelta(hours=5))  # the same day, kind and currency
        session.commit()
        # read while the second gift is still open: rolled sums plus the open change
        totals = exact(session)
        assert [(t.amount_minor, t.row_count) for t in totals] == [(2003, 2)]
        figures = reports.figures_between(session, DAY - timedelta(hours=9), DAY + timedelta(1))
        assert figures["usd"].gross == 2003
        roll_up(session)
        session.commit()
        assert exact(session) == totals
        assert rolled(session) == {(date(2026, 3, 10), "usd", "donation"): (2003, 2)}
        assert open_changes(session) == 0


def test_a_back_dated_posting_lands_on_its_own_old_day(database: Database) -> None:
    with database.session() as session:
        for n in range(3):
            give(session, n)
        session.commit()
        roll_up(session)
        session.commit()
        a_year_ago = DAY - timedelta(days=365)
        give(session, 9, at=a_year_ago)  # history recovered late (stripe sync)
        session.commit()
        exact(session)
        since = datetime(2025, 3, 1, tzinfo=UTC)
        until = datetime(2025, 4, 1, tzinfo=UTC)
        assert reports.figures_between(session, since, until)["usd"].gross == 1009
        roll_up(session)
        session.commit()
        exact(session)
        assert rolled(session)[(a_year_ago.date(), "usd", "donation")] == (1009, 1)
        assert reports.figures_between(session, since, until)["usd"].gross == 1009


def test_a_settlement_in_another_currency_after_the_roll_up_moves_the_row(
    database: Database,
) -> None:
    with database.session() as session:
        give(session, 1, currency="eur")
        give(session, 2, currency="usd")
        session.commit()
        roll_up(session)
        session.commit()
        settle(session, 1, currency="eur", into="usd")  # converted: the row is in dollars now
        settle(session, 2)
        session.commit()
        before = exact(session)
        assert {(t.currency, t.kind): t.amount_minor for t in before} == {
            ("usd", "donation"): 1001 * 11 // 10 + 1002
        }
        roll_up(session)
        session.commit()
        assert exact(session) == before
        day = date(2026, 3, 10)
        assert rolled(session) == {(day, "usd", "donation"): (1001 * 11 // 10 + 1002, 2)}


def test_a_roll_up_in_pieces_and_a_rebuild_leave_the_same_totals(database: Database) -> None:
    with database.session() as session:
        for n in range(12):
            give(session, n, at=DAY + timedelta(days=n % 4))
            settle(session, n)
            session.commit()
        totals = exact(session)
        assert roll_up(session, limit=5) == 5
        session.commit()
        assert exact(session) == totals
        while roll_up(session, limit=5):
            session.commit()
        assert open_changes(session) == 0
        assert exact(session) == totals
        give(session, 99)
        session.commit()
        ledger_totals.rebuild(session)
        session.commit()
        assert open_changes(session) == 0
        assert len(exact(session)) == len(totals)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_roll_up_racing_a_posting_counts_it_once(database: Database) -> None:
    # A posting holds its transaction open (its change written, not committed)
    # while a roll-up runs and commits: the change is not folded, and stays open.
    posting = database.session()
    give(posting, 1)
    settle(posting, 1)
    with database.session() as other:
        give(other, 2)
        other.commit()
        assert roll_up(other) == 1
        other.commit()
    posting.commit()
    posting.close()
    with database.session() as session:
        assert open_changes(session) == 2
        totals = exact(session)
        roll_up(session)
        session.commit()
        assert exact(session) == totals


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postings_from_three_workers_and_roll_ups_in_a_loop_keep_the_totals_exact(
    database: Database,
) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def post(first: int) -> None:
        try:
            for n in range(first, first + 40):
                with database.session() as session:
                    give(session, n, at=DAY + timedelta(minutes=n))  # one hot day
                    session.commit()
                with database.session() as session:
                    settle(session, n)
                    session.commit()
        except BaseException as exc:
            errors.append(exc)

    def roll() -> None:
        try:
            while not done.is_set():
                with database.session() as session:
                    roll_up(session, limit=7)
                    session.commit()
        except BaseException as exc:
            errors.append(exc)

    rollers = [threading.Thread(target=roll) for _ in range(2)]
    posters = [threading.Thread(target=post, args=(first,)) for first in (0, 100, 200)]
    for thread in rollers + posters:
        thread.start()
    for thread in posters:
        thread.join(timeout=120)
    done.set()
    for thread in rollers:
        thread.join(timeout=30)
    assert errors == []
    with database.session() as session:
        totals = exact(session)
        assert [(t.currency, t.row_count) for t in totals] == [("usd", 120)]
        while roll_up(session):
            session.commit()
        assert exact(session) == totals
        assert session.scalar(select(func.count()).select_from(LedgerDailyTotal)) == 1
