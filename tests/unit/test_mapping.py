"""The pure mapping from Stripe payloads (current and older API versions) to
the facts handlers act on."""

from __future__ import annotations

from datetime import UTC, datetime

from tests import event_factory as ef
from webhooks import mapping


def test_a_current_charge_does_not_say_which_invoice_it_paid() -> None:
    obj = ef.charge(
        "ch_1",
        amount=2500,
        created=ef.T0,
        payment_intent="pi_1",
        email="a@example.org",
        name="Ada",
        metadata={"checkout_id": "co_1", "frequency": "once"},
    )
    facts = mapping.charge(obj)
    assert facts.invoice_known is False
    assert (facts.id, facts.amount_minor, facts.currency) == ("ch_1", 2500, "usd")
    assert (facts.checkout_id, facts.frequency, facts.email) == ("co_1", "once", "a@example.org")
    assert facts.balance_transaction is None
    assert facts.created_at == datetime.fromtimestamp(ef.T0, UTC)


def test_an_old_charge_says_it_paid_no_invoice_or_which_one() -> None:
    none = mapping.charge(
        ef.charge("ch_1", amount=1, created=ef.T0, payment_intent=None, old_invoice=None)
    )
    some = mapping.charge(
        ef.charge("ch_2", amount=1, created=ef.T0, payment_intent=None, old_invoice="in_9")
    )
    assert (none.invoice_known, none.invoice_id) == (True, None)
    assert (some.invoice_known, some.invoice_id) == (True, "in_9")


def test_an_expanded_balance_transaction_is_read_from_the_payload() -> None:
    bt = ef.balance_transaction("txn_1", amount=2500, fee=103, source="ch_1", created=ef.T0)
    facts = mapping.charge(
        ef.charge("ch_1", amount=2500, created=ef.T0, payment_intent=None, balance_transaction=bt)
    )
    assert facts.balance_transaction is not None
    assert facts.balance_transaction.id == "txn_1"
    assert facts.balance_transaction.expanded is not None
    assert facts.balance_transaction.expanded.net_minor == 2397


def test_a_current_invoice_names_its_subscription_under_parent() -> None:
    obj = ef.invoice(
        "in_1",
        customer="cus_1",
        subscription_id="sub_1",
        created=ef.T0,
        amount=1000,
        metadata={"checkout_id": "co_1"},
    )
    facts = mapping.invoice(obj)
    assert (facts.subscription_id, facts.checkout_id, facts.old_shape) == ("sub_1", "co_1", False)
    assert facts.charge_id is None


def test_an_old_invoice_names_its_subscription_charge_and_payment_intent() -> None:
    obj = ef.invoice(
        "in_1",
        customer="cus_1",
        subscription_id="sub_1",
        created=ef.T0,
        amount=1000,
        old_shape=True,
        old_charge="ch_1",
        old_payment_intent="pi_1",
    )
    facts = mapping.invoice(obj)
    assert (facts.subscription_id, facts.charge_id, facts.payment_intent_id) == (
        "sub_1",
        "ch_1",
        "pi_1",
    )
    assert facts.old_shape and facts.paid


def test_an_invoice_payment_links_an_invoice_to_a_payment_intent() -> None:
    obj = ef.invoice_payment(
        "inpay_1", invoice_id="in_1", payment_intent="pi_1", amount=1000, created=ef.T0
    )
    facts = mapping.invoice_payment(obj)
    assert (facts.invoice_id, facts.payment_intent_id, facts.charge_id) == ("in_1", "pi_1", None)


def test_an_old_payment_intent_lists_its_charges_and_names_its_invoice() -> None:
    ch = ef.charge("ch_1", amount=1000, created=ef.T0, payment_intent="pi_1")
    obj = ef.payment_intent(
        "pi_1", amount=1000, created=ef.T0, latest_charge=None, old_charges=[ch], old_invoice="in_1"
    )
    facts = mapping.payment_intent(obj)
    assert facts.invoice_id == "in_1"
    [charge] = facts.charges
    assert (charge.id, charge.invoice_known, charge.invoice_id) == ("ch_1", True, "in_1")


def test_an_old_one_time_payment_intent_marks_its_charges_as_paying_no_invoice() -> None:
    ch = ef.charge("ch_1", amount=1000, created=ef.T0, payment_intent="pi_1")
    obj = ef.payment_intent(
        "pi_1", amount=1000, created=ef.T0, latest_charge=None, old_charges=[ch], old_invoice=None
    )
    [charge] = mapping.payment_intent(obj).charges
    assert (charge.invoice_known, charge.invoice_id) == (True, None)


def test_subscription_periods_are_read_from_items_now_and_the_top_before() -> None:
    new = mapping.subscription(
        ef.subscription(
            "sub_1",
            customer="cus_1",
            created=ef.T0,
            status="active",
            amount=1000,
            period_end=ef.T0 + 99,
            interval="year",
        )
    )
    old = mapping.subscription(
        ef.subscription(
            "sub_1",
            customer="cus_1",
            created=ef.T0,
            status="active",
            amount=1000,
            period_end=ef.T0 + 99,
            old_shape=True,
        )
    )
    assert (
        new.current_period_end == old.current_period_end == datetime.fromtimestamp(ef.T0 + 99, UTC)
    )
    assert (new.amount_minor, new.currency, new.interval) == (1000, "usd", "year")
    assert (old.amount_minor, old.currency, old.interval) == (1000, "usd", "month")


def test_dispute_balance_transactions_are_withdrawals_or_reinstatements() -> None:
    obj = ef.dispute_won("ch_1", 2500, start=ef.T0, tag="x").events[-1]["data"]["object"]
    facts = mapping.dispute(obj)
    assert facts.outcome == "won"
    assert [mapping.dispute_kind(t) for t in facts.balance_transactions] == [
        "dispute",
        "dispute_reversal",
    ]
    assert [(t.amount_minor, t.fee_minor, t.net_minor) for t in facts.balance_transactions] == [
        (-2500, 1500, -4000),
        (2500, -1500, 4000),
    ]


def test_a_checkout_session_names_our_checkout_from_client_reference_id() -> None:
    obj = ef.checkout_session(
        "cs_1",
        checkout_id="co_1",
        mode="payment",
        created=ef.T0,
        customer="cus_1",
        email="a@example.org",
        amount=1000,
        payment_intent="pi_1",
    )
    facts = mapping.checkout_session(obj)
    assert (facts.checkout_id, facts.payment_intent_id, facts.email) == (
        "co_1",
        "pi_1",
        "a@example.org",
    )


def test_refunds_listed_on_an_old_charge_are_refund_objects() -> None:
    obj = ef.charge("ch_1", amount=1000, created=ef.T0, payment_intent=None)
    obj["refunds"] = {
        "data": [
            ef.refund(
                "re_1", charge_id="ch_1", amount=400, created=ef.T0, balance_transaction="txn_r"
            )
        ]
    }
    [refund] = mapping.refunds_listed_on_charge(obj)
    assert (refund.id, refund.amount_minor, refund.charge_id) == ("re_1", 400, "ch_1")


def test_an_uncaptured_charge_is_not_recognisable_and_counts_nothing_refunded() -> None:
    held = ef.charge("ch_1", amount=2500, created=ef.T0, payment_intent="pi_1", captured=False)
    released = mapping.charge({**held, "refunded": True, "amount_refunded": 2500})
    assert (released.succeeded, released.captured, released.recognisable) == (True, False, False)
    assert released.amount_refunded_minor == 0


def test_a_partial_capture_is_what_was_captured_and_its_released_rest_is_not_refunded() -> None:
    obj = ef.charge(
        "ch_1",
        amount=2500,
        created=ef.T0,
        payment_intent="pi_1",
        amount_captured=1500,
        amount_refunded=1000 + 300,
    )
    facts = mapping.charge(obj)
    assert (facts.recognisable, facts.amount_minor, facts.amount_refunded_minor) == (
        True,
        1500,
        300,
    )


def test_an_invoice_names_the_subscription_behind_it_or_none_when_one_off() -> None:
    current = ef.invoice(
        "in_1", customer="cus_1", subscription_id="sub_1", created=ef.T0, amount=1000
    )
    old = ef.invoice(
        "in_2",
        customer="cus_1",
        subscription_id="sub_2",
        created=ef.T0,
        amount=1000,
        old_shape=True,
    )
    one_off = ef.invoice("in_3", customer="cus_1", subscription_id=None, created=ef.T0, amount=1000)
    old_one_off = ef.invoice(
        "in_4", customer="cus_1", subscription_id=None, created=ef.T0, amount=1000, old_shape=True
    )
    assert [mapping.invoice_subscription(i) for i in (current, old, one_off, old_one_off)] == [
        "sub_1",
        "sub_2",
        None,
        None,
    ]
    expanded = mapping.charge(
        ef.charge("ch_1", amount=1000, created=ef.T0, payment_intent=None, old_invoice=None)
        | {"invoice": old_one_off}
    )
    assert (expanded.invoice_id, expanded.invoice_expanded, expanded.invoice_subscription_id) == (
        "in_4",
        True,
        None,
    )
