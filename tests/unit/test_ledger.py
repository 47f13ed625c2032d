"""The ledger's core rules: balanced entries, keyed postings, the CSV's
formatting and formula guard."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from app import ledger
from app.db import Database
from app.ledger import LedgerError, Line, Row


def test_an_entry_balances_when_each_currency_sums_to_zero() -> None:
    ledger.check_balanced(
        [
            Line("stripe_receivable", "usd", 2500),
            Line("revenue_donations", "usd", -2500),
            Line("fx_conversion", "eur", 10),
            Line("stripe_balance", "eur", -10),
        ]
    )


def test_an_entry_that_does_not_balance_in_one_currency_is_refused() -> None:
    with pytest.raises(LedgerError, match="does not balance"):
        ledger.check_balanced(
            [Line("stripe_balance", "usd", 2500), Line("revenue_donations", "eur", -2500)]
        )


def test_an_unknown_account_is_refused() -> None:
    with pytest.raises(LedgerError, match="unknown account"):
        ledger.check_balanced([Line("petty_cash", "usd", 1), Line("bank", "usd", -1)])


def test_an_upper_case_currency_is_refused() -> None:
    with pytest.raises(LedgerError, match="lower-case"):
        ledger.check_balanced([Line("bank", "USD", 1), Line("stripe_balance", "USD", -1)])


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@x", "'@x"),
        ("Ada", "Ada"),
        (None, ""),
        ("", ""),
    ],
)
def test_text_a_donor_typed_never_runs_as_a_formula(text: str | None, safe: str) -> None:
    assert ledger.guard_formula(text) == safe


def _row(**changes: object) -> Row:
    base = dict(
        occurred_at=datetime(2026, 11, 24, 9, 15, tzinfo=UTC),
        kind="donation",
        donor_email="ada@example.org",
        donor_name="=cmd",
        currency="jpy",
        amount_minor=2500,
        fee_minor=None,
        net_minor=None,
        donor_currency="jpy",
        donor_amount_minor=2500,
        frequency="once",
        campaign=None,
        utm_source=None,
        utm_medium=None,
        utm_content=None,
        utm_term=None,
        stripe_id="ch_1",
    )
    base.update(changes)
    return Row(**base)  # type: ignore[arg-type]


def test_a_row_is_formatted_with_stripes_decimal_places_and_utc_time() -> None:
    assert ledger.format_row(_row()) == [
        "2026-11-24T09:15:00Z",
        "donation",
        "ada@example.org",
        "'=cmd",
        "jpy",
        "2500",
        "",
        "",
        "jpy",
        "2500",
        "once",
        "",
        "",
        "",
        "",
        "",
        "ch_1",
    ]
    kwd = ledger.format_row(
        _row(
            currency="kwd",
            amount_minor=12340,
            fee_minor=340,
            net_minor=12000,
            donor_currency="kwd",
            donor_amount_minor=12340,
        )
    )
    assert kwd[5:8] == ["12.340", "0.340", "12.000"]


def test_the_csv_columns_are_the_contracts() -> None:
    assert ",".join(ledger.CSV_COLUMNS) == (
        "occurred_at,kind,donor_email,donor_name,currency,amount,fee,net,donor_currency,"
        "donor_amount,frequency,campaign,utm_source,utm_medium,utm_content,utm_term,stripe_id"
    )


def test_other_balance_transactions_map_to_stripe_fee_or_adjustment() -> None:
    assert ledger.OTHER_TYPES["stripe_fee"] == "stripe_fee"
    assert ledger.OTHER_TYPES.get("reserve_transaction", "adjustment") == "adjustment"


# -- posting, on both databases -----------------------------------------------------


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    database = Database(db_url)
    with database.session() as s:
        yield s
    database.dispose()


AT = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)


def test_posting_a_key_twice_posts_once(session: Session) -> None:
    first = ledger.recognise_payment(
        session,
        charge_id="ch_1",
        kind="donation",
        currency="usd",
        amount_minor=2500,
        occurred_at=AT,
        donor_id=None,
    )
    second = ledger.recognise_payment(
        session,
        charge_id="ch_1",
        kind="donation",
        currency="usd",
        amount_minor=9999,
        occurred_at=AT,
        donor_id=None,
    )
    session.commit()

    assert (first, second) == (True, False)
    assert ledger.entries_by_key(session) == {
        "charge:ch_1": (
            "donation",
            "ch_1",
            (("revenue_donations", "usd", -2500), ("stripe_receivable", "usd", 2500)),
        )
    }


def test_an_unbalanced_entry_is_never_written(session: Session) -> None:
    with pytest.raises(LedgerError):
        ledger.post_entry(
            session,
            "x:1",
            "adjustment",
            occurred_at=AT,
            stripe_object_id="x",
            movement=ledger.Movement("usd", 1),
            lines=[Line("adjustments", "usd", 1)],
        )
    assert ledger.entries_by_key(session) == {}


def test_verify_finds_a_settled_charge_whose_receivable_does_not_net_to_zero(
    session: Session,
) -> None:
    ledger.recognise_payment(
        session,
        charge_id="ch_1",
        kind="donation",
        currency="usd",
        amount_minor=2500,
        occurred_at=AT,
        donor_id=None,
    )
    # A settlement for a different amount than was recognised, in another
    # currency so that it balances on its own.
    txn = ledger.BalanceTxn(
        id="txn_1",
        type="charge",
        currency="eur",
        amount_minor=2300,
        fee_minor=100,
        net_minor=2200,
        created_at=AT,
    )
    ledger.settle(
        session,
        txn,
        object_id="ch_1",
        object_currency="usd",
        object_amount_minor=2400,
        charge_id="ch_1",
        donor_id=None,
    )
    session.commit()

    assert ledger.verify(session) == ["ch_1 is settled but 100 usd stays receivable"]


def test_a_settlement_in_the_charges_currency_must_move_the_charges_amount(
    session: Session,
) -> None:
    txn = ledger.BalanceTxn(
        id="txn_1",
        type="charge",
        currency="usd",
        amount_minor=2300,
        fee_minor=100,
        net_minor=2200,
        created_at=AT,
    )
    with pytest.raises(LedgerError, match="moves 2300"):
        ledger.settle(
            session,
            txn,
            object_id="ch_1",
            object_currency="usd",
            object_amount_minor=2500,
            charge_id="ch_1",
            donor_id=None,
        )


def test_a_stripe_fee_outside_a_payment_is_its_own_movement(session: Session) -> None:
    txn = ledger.BalanceTxn(
        id="txn_f",
        type="stripe_fee",
        currency="usd",
        amount_minor=-200,
        fee_minor=0,
        net_minor=-200,
        created_at=AT,
    )
    charge = ledger.BalanceTxn(
        id="txn_c",
        type="charge",
        currency="usd",
        amount_minor=100,
        fee_minor=3,
        net_minor=97,
        created_at=AT,
    )

    assert ledger.post_other_balance_transaction(session, txn) is True
    assert ledger.post_other_balance_transaction(session, charge) is False
    session.commit()

    rows = list(ledger.export_rows(session))
    assert [(r[1], r[5], r[6], r[7], r[10]) for r in rows] == [
        ("stripe_fee", "-2.00", "0.00", "-2.00", "")
    ]
    assert ledger.summary(session)["currencies"]["usd"]["fees"] == "2.00"
    assert ledger.verify(session) == []
