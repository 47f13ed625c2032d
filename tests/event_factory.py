"""Coherent Stripe-shaped objects and events for whole scenarios (a one-time
donation, a membership and its renewal, partial refunds, disputes won and
lost, payouts, shapes of older API versions), built on Stripe's own example
objects (tests/stripe_helpers.stripe_object) and wrapped as events
(make_event).

Each scenario is a `Scenario`: its events in the order Stripe would send them
(their `created` rises), and the GET answers processing may need, to register
on the `stripe_http` RequestsMock with `scenario.stub(stripe_http)`. Ids are
derived from a tag, so several scenarios can share one database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import responses
from responses import matchers

from tests.stripe_helpers import API_VERSION, make_event, stripe_object

API = "https://api.stripe.com/v1"
OLD_API_VERSION = "2017-08-15"  # what localstripe sends
BASIL_PREDECESSOR = "2024-12-18.acacia"  # before invoice payments
T0 = 1_790_000_000  # 2026-09-21T14:13:20Z: scenarios start here
DAY = 86_400


def fee_for(amount: int) -> int:
    """Stripe's standard card fee: 2.9 % + 30 (minor units), rounded half up."""
    return (amount * 29 + 500) // 1000 + 30


# -- objects -------------------------------------------------------------------


def balance_transaction(
    txn_id: str,
    *,
    amount: int,
    fee: int,
    source: str,
    created: int,
    currency: str = "usd",
    type: str = "charge",
    reporting_category: str | None = None,
    exchange_rate: float | None = None,
) -> dict[str, Any]:
    return stripe_object(
        "balance_transaction",
        id=txn_id,
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=currency,
        source=source,
        created=created,
        available_on=created + 2 * DAY,
        type=type,
        reporting_category=reporting_category or type,
        exchange_rate=exchange_rate,
        status="available",
        fee_details=(
            [
                {
                    "amount": fee,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                    "application": None,
                }
            ]
            if fee
            else []
        ),
    )


def charge(
    charge_id: str,
    *,
    amount: int,
    created: int,
    payment_intent: str | None,
    currency: str = "usd",
    customer: str | None = None,
    email: str | None = None,
    name: str | None = None,
    balance_transaction: str | dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
    status: str = "succeeded",
    amount_refunded: int = 0,
    disputed: bool = False,
    old_invoice: str | bool | None = False,
    captured: bool | None = None,
    amount_captured: int | None = None,
) -> dict[str, Any]:
    """A charge. `old_invoice` False: the current shape (no `invoice` field);
    None or an id: an older version's shape with `invoice` set to it.
    `captured` False: an authorisation (manual capture) not captured yet;
    `amount_captured` less than `amount`: a partial capture."""
    if captured is None:
        captured = status == "succeeded"
    if amount_captured is None:
        amount_captured = amount if captured else 0
    obj = stripe_object(
        "charge",
        id=charge_id,
        amount=amount,
        amount_captured=amount_captured,
        captured=captured,
        paid=status == "succeeded",
        amount_refunded=amount_refunded,
        refunded=amount_refunded >= amount,
        disputed=disputed,
        created=created,
        currency=currency,
        customer=customer,
        payment_intent=payment_intent,
        balance_transaction=balance_transaction,
        metadata=metadata or {},
        status=status,
        description=None,
        receipt_email=email,
    )
    obj["billing_details"] = {**obj["billing_details"], "email": email, "name": name}
    obj.pop("refunds", None)  # not included since 2022-11-15
    obj.pop("invoice", None)
    if old_invoice is not False:
        obj["invoice"] = old_invoice
    return obj


def payment_intent(
    pi_id: str,
    *,
    amount: int,
    created: int,
    latest_charge: str | None,
    currency: str = "usd",
    customer: str | None = None,
    metadata: dict[str, str] | None = None,
    status: str = "succeeded",
    old_charges: list[dict[str, Any]] | None = None,
    old_invoice: str | bool | None = False,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "created": created,
        "customer": customer,
        "latest_charge": latest_charge,
        "livemode": False,
        "metadata": metadata or {},
        "status": status,
        "receipt_email": None,
        "capture_method": "automatic_async",
    }
    if old_charges is not None:
        obj["charges"] = {"object": "list", "data": old_charges, "has_more": False}
    if old_invoice is not False:
        obj["invoice"] = old_invoice
    return obj


def refund(
    refund_id: str,
    *,
    charge_id: str,
    amount: int,
    created: int,
    balance_transaction: str | dict[str, Any] | None,
    currency: str = "usd",
    status: str = "succeeded",
    failure_balance_transaction: str | dict[str, Any] | None = None,
    payment_intent: str | None = None,
    reason: str | None = "requested_by_customer",
) -> dict[str, Any]:
    obj = stripe_object(
        "refund",
        id=refund_id,
        charge=charge_id,
        amount=amount,
        created=created,
        currency=currency,
        balance_transaction=balance_transaction,
        status=status,
        payment_intent=payment_intent,
        reason=reason,
    )
    obj["failure_balance_transaction"] = failure_balance_transaction
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    return obj


def dispute(
    dispute_id: str,
    *,
    charge_id: str,
    amount: int,
    created: int,
    status: str,
    balance_transactions: list[dict[str, Any]],
    currency: str = "usd",
    reason: str = "fraudulent",
) -> dict[str, Any]:
    return stripe_object(
        "dispute",
        id=dispute_id,
        charge=charge_id,
        amount=amount,
        created=created,
        currency=currency,
        status=status,
        reason=reason,
        balance_transactions=balance_transactions,
        is_charge_refundable=False,
    )


def payout(
    payout_id: str,
    *,
    amount: int,
    created: int,
    status: str,
    balance_transaction: str | dict[str, Any],
    failure_balance_transaction: str | dict[str, Any] | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    return stripe_object(
        "payout",
        id=payout_id,
        amount=amount,
        created=created,
        arrival_date=created + 2 * DAY,
        status=status,
        currency=currency,
        balance_transaction=balance_transaction,
        failure_balance_transaction=failure_balance_transaction,
        failure_code="account_closed" if status == "failed" else None,
    )


def subscription(
    sub_id: str,
    *,
    customer: str,
    created: int,
    status: str,
    amount: int,
    period_end: int,
    currency: str = "usd",
    interval: str = "month",
    cancel_at_period_end: bool = False,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    metadata: dict[str, str] | None = None,
    old_shape: bool = False,
) -> dict[str, Any]:
    price = {
        "id": f"price_{sub_id}",
        "object": "price",
        "currency": currency,
        "unit_amount": amount,
        "recurring": {"interval": interval, "interval_count": 1},
        "product": "prod_membership",
    }
    item: dict[str, Any] = {
        "id": f"si_{sub_id}",
        "object": "subscription_item",
        "price": price,
        "quantity": 1,
    }
    obj: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "created": created,
        "status": status,
        "currency": currency,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "ended_at": ended_at,
        "livemode": False,
        "metadata": metadata or {},
        "items": {"object": "list", "data": [item], "has_more": False},
    }
    if old_shape:
        obj["current_period_end"] = period_end
        obj["current_period_start"] = period_end - 30 * DAY
        obj["plan"] = {
            "id": price["id"],
            "amount": amount,
            "currency": currency,
            "interval": interval,
        }
        item["plan"] = obj["plan"]
        del item["price"]
    else:
        item["current_period_end"] = period_end
        item["current_period_start"] = period_end - 30 * DAY
    return obj


def invoice(
    invoice_id: str,
    *,
    customer: str,
    subscription_id: str | None,
    created: int,
    amount: int,
    status: str = "paid",
    currency: str = "usd",
    email: str | None = None,
    billing_reason: str = "subscription_cycle",
    metadata: dict[str, str] | None = None,
    old_charge: str | None = None,
    old_payment_intent: str | None = None,
    old_shape: bool = False,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "customer_email": email,
        "customer_name": None,
        "created": created,
        "currency": currency,
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount,
        "status": status,
        "billing_reason": billing_reason,
        "livemode": False,
    }
    if old_shape:
        obj["subscription"] = subscription_id
        obj["charge"] = old_charge
        obj["payment_intent"] = old_payment_intent
        obj["paid"] = status == "paid"
    elif subscription_id is None:
        obj["parent"] = None  # a one-off invoice: no subscription behind it
    else:
        obj["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "subscription": subscription_id,
                "metadata": metadata or {},
            },
        }
    return obj


def invoice_payment(
    inpay_id: str,
    *,
    invoice_id: str,
    payment_intent: str,
    amount: int,
    created: int,
    currency: str = "usd",
) -> dict[str, Any]:
    return stripe_object(
        "invoice_payment",
        id=inpay_id,
        invoice=invoice_id,
        amount_paid=amount,
        amount_requested=amount,
        created=created,
        currency=currency,
        livemode=False,
        status="paid",
        payment={"type": "payment_intent", "payment_intent": payment_intent},
        status_transitions={"canceled_at": None, "paid_at": created},
    )


def checkout_session(
    session_id: str,
    *,
    checkout_id: str,
    mode: str,
    created: int,
    customer: str,
    email: str,
    amount: int,
    payment_intent: str | None = None,
    subscription_id: str | None = None,
    currency: str = "usd",
    status: str = "complete",
    payment_status: str = "paid",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "client_reference_id": checkout_id,
        "metadata": {"checkout_id": checkout_id, **(metadata or {})},
        "mode": mode,
        "created": created,
        "customer": customer,
        "customer_details": {"email": email, "name": None},
        "amount_total": amount,
        "currency": currency,
        "payment_intent": payment_intent,
        "subscription": subscription_id,
        "invoice": None,
        "status": status,
        "payment_status": payment_status,
        "livemode": False,
    }


# -- scenarios -------------------------------------------------------------------


@dataclass
class Stub:
    path: str  # after /v1
    body: Any
    query: dict[str, str] | None = None
    status: int = 200


@dataclass
class Scenario:
    events: list[dict[str, Any]] = field(default_factory=list)
    stubs: list[Stub] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        event_type: str,
        obj: dict[str, Any],
        created: int,
        *,
        api_version: str = API_VERSION,
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event = make_event(
            event_type,
            obj,
            created=created,
            api_version=api_version,
            previous_attributes=previous_attributes,
            event_id=f"evt_{len(self.events):03d}_{obj['id']}_{event_type}",
        )
        self.events.append(event)
        return event

    def get(
        self, path: str, body: Any, query: dict[str, str] | None = None, status: int = 200
    ) -> None:
        self.stubs.append(Stub(path, body, query, status))

    def __add__(self, other: Scenario) -> Scenario:
        return Scenario(
            self.events + other.events, self.stubs + other.stubs, {**self.facts, **other.facts}
        )

    def stub(self, mock: responses.RequestsMock) -> None:
        """Register every look-up this scenario may need (each may be called
        or not, depending on the order the events are applied in)."""
        for s in self.stubs:
            match = [matchers.query_param_matcher(s.query)] if s.query is not None else []
            mock.get(f"{API}{s.path}", json=s.body, status=s.status, match=match)


def stub_invoice_payments(
    scenario: Scenario, payment_intent_id: str, found: list[dict[str, Any]]
) -> None:
    """The invoice payments of an intent, each with its invoice expanded (as
    app.stripe_api asks) when the scenario stubs that invoice already."""
    invoices = {s.path: s.body for s in scenario.stubs}
    expanded = [
        {**f, "invoice": invoices.get(f"/invoices/{f['invoice']}", f["invoice"])} for f in found
    ]
    scenario.get(
        "/invoice_payments",
        {"object": "list", "data": expanded, "has_more": False, "url": "/v1/invoice_payments"},
        query={
            "payment[type]": "payment_intent",
            "payment[payment_intent]": payment_intent_id,
            "expand[0]": "data.invoice",
            "limit": "100",
        },
    )


def one_time_donation(
    tag: str,
    *,
    amount: int = 2500,
    currency: str = "usd",
    email: str | None = None,
    name: str = "Ada Reader",
    start: int = T0,
    checkout_id: str | None = None,
    settlement_currency: str | None = None,
    exchange_rate: float | None = None,
    settled_amount: int | None = None,
) -> Scenario:
    """A one-time gift through our form (current API): the session completes,
    the intent and charge succeed without a balance transaction, and a
    charge.updated brings it later (fetched: one call)."""
    s = Scenario()
    email = email or f"{tag}@example.org"
    checkout_id = checkout_id or f"co_{tag}"
    ch, pi, txn, cus = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}", f"cus_{tag}"
    meta = {"checkout_id": checkout_id, "frequency": "once"}
    s.facts.update(
        charge=ch,
        payment_intent=pi,
        txn=txn,
        customer=cus,
        email=email,
        checkout_id=checkout_id,
        amount=amount,
        currency=currency,
        session=f"cs_{tag}",
        created=start + 10,
    )
    s_cur = settlement_currency or currency
    s_amount = settled_amount if settled_amount is not None else amount
    fee = fee_for(s_amount)
    s.facts["fee"] = fee
    bt = balance_transaction(
        txn,
        amount=s_amount,
        fee=fee,
        source=ch,
        created=start + 10,
        currency=s_cur,
        exchange_rate=exchange_rate,
    )
    s.get(f"/balance_transactions/{txn}", bt)
    s.add(
        "checkout.session.completed",
        checkout_session(
            f"cs_{tag}",
            checkout_id=checkout_id,
            mode="payment",
            created=start,
            customer=cus,
            email=email,
            amount=amount,
            currency=currency,
            payment_intent=pi,
        ),
        start + 12,
    )
    s.add(
        "payment_intent.succeeded",
        payment_intent(
            pi,
            amount=amount,
            currency=currency,
            created=start + 5,
            latest_charge=ch,
            customer=cus,
            metadata=meta,
        ),
        start + 11,
    )
    ch_obj = charge(
        ch,
        amount=amount,
        currency=currency,
        created=start + 10,
        payment_intent=pi,
        customer=cus,
        email=email,
        name=name,
        metadata=meta,
    )
    s.add("charge.succeeded", ch_obj, start + 11)
    s.add(
        "charge.updated",
        {**ch_obj, "balance_transaction": txn},
        start + 40,
        previous_attributes={"balance_transaction": None},
    )
    s.facts["charge_object"] = {**ch_obj, "balance_transaction": txn}
    return s


def payment_not_from_our_form(
    tag: str,
    *,
    amount: int = 5000,
    start: int = T0,
    email: str | None = None,
    with_email: bool = True,
) -> Scenario:
    """A payment made in the Dashboard: no metadata, the charge already has
    its balance transaction; processing asks Stripe once whether it paid an
    invoice (it did not). Without an email in the payload, the customer is
    fetched."""
    s = Scenario()
    email = email or f"{tag}@example.org"
    ch, pi, txn, cus = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}", f"cus_{tag}"
    s.facts.update(
        charge=ch,
        payment_intent=pi,
        txn=txn,
        customer=cus,
        email=email,
        amount=amount,
        fee=fee_for(amount),
    )
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=amount, fee=fee_for(amount), source=ch, created=start + 1),
    )
    stub_invoice_payments(s, pi, [])
    s.get(
        f"/customers/{cus}",
        {"id": cus, "object": "customer", "email": email, "name": "Dashboard Donor"},
    )
    s.add(
        "charge.succeeded",
        charge(
            ch,
            amount=amount,
            created=start,
            payment_intent=pi,
            customer=cus,
            email=email if with_email else None,
            name="Dashboard Donor",
            balance_transaction=txn,
        ),
        start + 1,
    )
    s.add(
        "payment_intent.succeeded",
        payment_intent(pi, amount=amount, created=start - 5, latest_charge=ch, customer=cus),
        start + 1,
    )
    return s


def membership(
    tag: str,
    *,
    amount: int = 1000,
    interval: str = "month",
    email: str | None = None,
    start: int = T0,
    renewals: int = 1,
    checkout_id: str | None = None,
) -> Scenario:
    """A membership through our form (current API) with `renewals` renewals:
    subscription created, the first invoice paid, its charge settled later;
    each renewal's invoice paid, its charge with the balance transaction."""
    s = Scenario()
    email = email or f"{tag}@example.org"
    checkout_id = checkout_id or f"co_{tag}"
    sub, cus = f"sub_{tag}", f"cus_{tag}"
    meta = {"checkout_id": checkout_id, "frequency": interval}
    period = 30 * DAY if interval == "month" else 365 * DAY
    s.facts.update(
        subscription=sub,
        customer=cus,
        email=email,
        checkout_id=checkout_id,
        session=f"cs_{tag}",
        amount=amount,
        charges=[],
        interval=interval,
        charge_objects=[],
    )
    # Renewal charges carry no email: the donor comes from the known customer,
    # or, if the renewal is the first thing we see, from Stripe's customer.
    s.get(
        f"/customers/{cus}",
        {"id": cus, "object": "customer", "email": email, "name": "Member Reader"},
    )
    s.add(
        "customer.subscription.created",
        subscription(
            sub,
            customer=cus,
            created=start,
            status="incomplete",
            amount=amount,
            interval=interval,
            period_end=start + period,
            metadata=meta,
        ),
        start + 1,
    )
    s.add(
        "checkout.session.completed",
        checkout_session(
            f"cs_{tag}",
            checkout_id=checkout_id,
            mode="subscription",
            created=start,
            customer=cus,
            email=email,
            amount=amount,
            subscription_id=sub,
        ),
        start + 6,
    )
    for n in range(renewals + 1):
        at = start + n * period
        inv, pi, ch, txn = (f"in_{tag}_{n}", f"pi_{tag}_{n}", f"ch_{tag}_{n}", f"txn_{tag}_{n}")
        s.facts["charges"].append(ch)
        bt = balance_transaction(txn, amount=amount, fee=fee_for(amount), source=ch, created=at + 3)
        s.get(f"/balance_transactions/{txn}", bt)
        s.get(
            f"/invoices/{inv}",
            invoice(
                inv,
                customer=cus,
                subscription_id=sub,
                created=at + 2,
                amount=amount,
                email=email,
                metadata=meta,
            ),
        )
        stub_invoice_payments(
            s,
            pi,
            [
                invoice_payment(
                    f"inpay_{tag}_{n}",
                    invoice_id=inv,
                    payment_intent=pi,
                    amount=amount,
                    created=at + 2,
                )
            ],
        )
        ch_obj = charge(
            ch,
            amount=amount,
            created=at + 3,
            payment_intent=pi,
            customer=cus,
            email=email if n == 0 else None,
            name="Member Reader",
        )
        s.add("charge.succeeded", ch_obj, at + 4)
        s.add(
            "payment_intent.succeeded",
            payment_intent(pi, amount=amount, created=at + 2, latest_charge=ch, customer=cus),
            at + 4,
        )
        s.add(
            "invoice_payment.paid",
            invoice_payment(
                f"inpay_{tag}_{n}", invoice_id=inv, payment_intent=pi, amount=amount, created=at + 2
            ),
            at + 5,
        )
        s.add(
            "invoice.paid",
            invoice(
                inv,
                customer=cus,
                subscription_id=sub,
                created=at + 2,
                amount=amount,
                email=email,
                metadata=meta,
                billing_reason="subscription_create" if n == 0 else "subscription_cycle",
            ),
            at + 5,
        )
        s.add(
            "invoice.payment_succeeded",
            invoice(
                inv,
                customer=cus,
                subscription_id=sub,
                created=at + 2,
                amount=amount,
                email=email,
                metadata=meta,
            ),
            at + 5,
        )
        s.add(
            "charge.updated",
            {**ch_obj, "balance_transaction": txn},
            at + 60,
            previous_attributes={"balance_transaction": None},
        )
        s.facts["charge_objects"].append({**ch_obj, "balance_transaction": txn})
        s.add(
            "customer.subscription.updated",
            subscription(
                sub,
                customer=cus,
                created=start,
                status="active",
                amount=amount,
                interval=interval,
                period_end=at + period,
                metadata=meta,
            ),
            at + 7,
            previous_attributes={"status": "incomplete"} if n == 0 else {"items": {}},
        )
    return s


def failed_renewal_then_retry(tag: str, *, amount: int = 1000, start: int = T0) -> Scenario:
    """A renewal whose first attempt is declined (subscription past due), then
    paid on retry (active again): one payment."""
    s = membership(tag, amount=amount, start=start, renewals=0)
    sub, cus = s.facts["subscription"], s.facts["customer"]
    at = start + 30 * DAY
    inv, pi = f"in_{tag}_r", f"pi_{tag}_r"
    ch_failed, ch_ok, txn = f"ch_{tag}_r_declined", f"ch_{tag}_r_ok", f"txn_{tag}_r_ok"
    meta = {"checkout_id": s.facts["checkout_id"], "frequency": "month"}
    s.facts.update(renewal_charge=ch_ok, declined_charge=ch_failed)
    s.get(
        f"/invoices/{inv}",
        invoice(inv, customer=cus, subscription_id=sub, created=at, amount=amount, metadata=meta),
    )
    stub_invoice_payments(
        s,
        pi,
        [
            invoice_payment(
                f"inpay_{tag}_r", invoice_id=inv, payment_intent=pi, amount=amount, created=at
            )
        ],
    )
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(
            txn, amount=amount, fee=fee_for(amount), source=ch_ok, created=at + 3 * DAY
        ),
    )
    s.add(
        "charge.failed",
        charge(
            ch_failed,
            amount=amount,
            created=at + 1,
            payment_intent=pi,
            customer=cus,
            status="failed",
        ),
        at + 2,
    )
    s.add(
        "payment_intent.payment_failed",
        payment_intent(
            pi,
            amount=amount,
            created=at,
            latest_charge=ch_failed,
            customer=cus,
            status="requires_payment_method",
        ),
        at + 2,
    )
    s.add(
        "invoice.payment_failed",
        invoice(
            inv,
            customer=cus,
            subscription_id=sub,
            created=at,
            amount=amount,
            status="open",
            metadata=meta,
        ),
        at + 3,
    )
    s.add(
        "customer.subscription.updated",
        subscription(
            sub,
            customer=cus,
            created=start,
            status="past_due",
            amount=amount,
            period_end=at + 30 * DAY,
            metadata=meta,
        ),
        at + 4,
        previous_attributes={"status": "active"},
    )
    retry = at + 3 * DAY
    s.add(
        "charge.succeeded",
        charge(
            ch_ok,
            amount=amount,
            created=retry,
            payment_intent=pi,
            customer=cus,
            balance_transaction=txn,
        ),
        retry + 1,
    )
    s.add(
        "invoice.paid",
        invoice(inv, customer=cus, subscription_id=sub, created=at, amount=amount, metadata=meta),
        retry + 2,
    )
    s.add(
        "customer.subscription.updated",
        subscription(
            sub,
            customer=cus,
            created=start,
            status="active",
            amount=amount,
            period_end=at + 30 * DAY,
            metadata=meta,
        ),
        retry + 3,
        previous_attributes={"status": "past_due"},
    )
    return s


def cancellation_at_period_end(base: Scenario, *, at: int) -> Scenario:
    """The member cancels: set to end at the period's end, later deleted."""
    s = Scenario(facts=dict(base.facts))
    sub, cus = base.facts["subscription"], base.facts["customer"]
    amount = base.facts["amount"]
    period_end = at + 10 * DAY
    s.add(
        "customer.subscription.updated",
        subscription(
            sub,
            customer=cus,
            created=T0,
            status="active",
            amount=amount,
            period_end=period_end,
            cancel_at_period_end=True,
            canceled_at=at,
        ),
        at,
        previous_attributes={"cancel_at_period_end": False},
    )
    s.facts["period_end"] = period_end
    return s


def subscription_deleted(base: Scenario, *, at: int) -> Scenario:
    s = Scenario(facts=dict(base.facts))
    sub, cus = base.facts["subscription"], base.facts["customer"]
    s.add(
        "customer.subscription.deleted",
        subscription(
            sub,
            customer=cus,
            created=T0,
            status="canceled",
            amount=base.facts["amount"],
            period_end=at,
            cancel_at_period_end=True,
            canceled_at=at - 10 * DAY,
            ended_at=at,
        ),
        at,
    )
    return s


def partial_refunds(
    charge_obj: dict[str, Any], amounts: list[int], *, start: int, tag: str | None = None
) -> Scenario:
    """Refunds on one charge, each with its balance transaction (fetched), and
    the charge.refunded events with the cumulative amount (status only)."""
    s = Scenario()
    charge_id = charge_obj["id"]
    tag = tag or charge_id
    refunded = 0
    s.facts["refunds"] = []
    for n, amount in enumerate(amounts):
        at = start + n * DAY
        re, txn = f"re_{tag}_{n}", f"txn_re_{tag}_{n}"
        s.facts["refunds"].append(re)
        refunded += amount
        s.get(
            f"/balance_transactions/{txn}",
            balance_transaction(txn, amount=-amount, fee=0, source=re, created=at, type="refund"),
        )
        s.add(
            "refund.created",
            refund(re, charge_id=charge_id, amount=amount, created=at, balance_transaction=txn),
            at + 1,
        )
        s.add(
            "charge.refunded",
            {
                **charge_obj,
                "amount_refunded": refunded,
                "refunded": refunded >= charge_obj["amount"],
            },
            at + 1,
        )
        s.add(
            "refund.updated",
            refund(re, charge_id=charge_id, amount=amount, created=at, balance_transaction=txn),
            at + 2,
        )
        s.facts.setdefault("refund_objects", []).append(
            refund(re, charge_id=charge_id, amount=amount, created=at, balance_transaction=txn)
        )
    # A charge.refunded applied before its refund's own event lists them.
    stub_refunds(s, charge_id, list(reversed(s.facts["refund_objects"])))
    return s


def stub_refunds(scenario: Scenario, charge_id: str, found: list[dict[str, Any]]) -> None:
    scenario.get(
        "/refunds",
        {"object": "list", "data": found, "has_more": False, "url": "/v1/refunds"},
        query={"charge": charge_id, "limit": "100"},
    )


REFUND_EVENTS_PREDECESSOR = "2023-10-16"  # after 2022-11-15, before 2024-10-28


def refunds_without_refund_events(
    charge_obj: dict[str, Any],
    amounts: list[int],
    *,
    start: int,
    tag: str,
    listed: int | None = None,
) -> Scenario:
    """Card refunds under API versions from 2022-11-15 up to 2024-10-28: no
    refund.* event, and charge.refunded carries only the cumulative
    `amount_refunded` (no `refunds` list); Stripe lists the refunds
    (the first `listed` of them, all by default)."""
    s = Scenario()
    charge_id = charge_obj["id"]
    currency = charge_obj["currency"]
    refunded = 0
    objects = []
    for n, amount in enumerate(amounts):
        at = start + n * DAY
        re, txn = f"re_{tag}_{n}", f"txn_re_{tag}_{n}"
        refunded += amount
        s.get(
            f"/balance_transactions/{txn}",
            balance_transaction(
                txn, amount=-amount, fee=0, source=re, created=at, type="refund", currency=currency
            ),
        )
        objects.append(
            refund(
                re,
                charge_id=charge_id,
                amount=amount,
                created=at,
                balance_transaction=txn,
                currency=currency,
            )
        )
        s.add(
            "charge.refunded",
            {
                **charge_obj,
                "amount_refunded": refunded,
                "refunded": refunded >= charge_obj["amount"],
            },
            at + 1,
            api_version=REFUND_EVENTS_PREDECESSOR,
        )
    s.facts.update(refunds=[r["id"] for r in objects], refunded=refunded)
    stub_refunds(s, charge_id, list(reversed(objects[:listed])))
    return s


def refund_that_fails(
    charge_id: str,
    amount: int,
    *,
    start: int,
    tag: str,
    currency: str = "usd",
    settled: tuple[str, int] | None = None,
) -> Scenario:
    """A refund whose money comes back (refund.failed with its failure
    balance transaction, in the payload expanded). `settled`: the
    settlement's (currency, amount) when Stripe converted."""
    s = Scenario()
    re, txn, fail = f"re_{tag}", f"txn_re_{tag}", f"txn_refail_{tag}"
    s.facts.update(refund=re, failure_txn=fail)
    s_cur, s_amount = settled or (currency, amount)
    bt = balance_transaction(
        txn, amount=-s_amount, fee=0, source=re, created=start, type="refund", currency=s_cur
    )
    s.get(f"/balance_transactions/{txn}", bt)
    s.add(
        "refund.created",
        refund(
            re,
            charge_id=charge_id,
            amount=amount,
            created=start,
            balance_transaction=txn,
            status="pending",
            currency=currency,
        ),
        start + 1,
    )
    failure = balance_transaction(
        fail,
        amount=s_amount,
        fee=0,
        source=re,
        created=start + 5 * DAY,
        type="refund_failure",
        currency=s_cur,
    )
    s.add(
        "refund.failed",
        refund(
            re,
            charge_id=charge_id,
            amount=amount,
            created=start,
            balance_transaction=txn,
            status="failed",
            currency=currency,
            failure_balance_transaction=failure,
        ),
        start + 5 * DAY,
    )
    return s


DISPUTE_FEE = 1500


def dispute_lost(charge_id: str, amount: int, *, start: int, tag: str) -> Scenario:
    """Funds withdrawn with the dispute fee, then closed as lost."""
    s = Scenario()
    du = f"du_{tag}"
    withdrawal = balance_transaction(
        f"txn_du_{tag}_w",
        amount=-amount,
        fee=DISPUTE_FEE,
        source=du,
        created=start + 1,
        type="adjustment",
        reporting_category="dispute",
    )
    s.facts.update(dispute=du, withdrawal=withdrawal["id"])
    s.add(
        "charge.dispute.created",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            created=start,
            status="needs_response",
            balance_transactions=[],
        ),
        start + 1,
    )
    s.add(
        "charge.dispute.funds_withdrawn",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            created=start,
            status="needs_response",
            balance_transactions=[withdrawal],
        ),
        start + 2,
    )
    s.add(
        "charge.dispute.updated",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            created=start,
            status="under_review",
            balance_transactions=[withdrawal],
        ),
        start + DAY,
    )
    s.add(
        "charge.dispute.closed",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            created=start,
            status="lost",
            balance_transactions=[withdrawal],
        ),
        start + 20 * DAY,
    )
    return s


def dispute_won(
    charge_id: str,
    amount: int,
    *,
    start: int,
    tag: str,
    currency: str = "usd",
    settled: tuple[str, int] | None = None,
) -> Scenario:
    """Funds withdrawn with the fee, reinstated (fee back too), closed as won.
    `settled`: the settlement's (currency, amount) when Stripe converted."""
    s = Scenario()
    du = f"du_{tag}"
    s_cur, s_amount = settled or (currency, amount)
    withdrawal = balance_transaction(
        f"txn_du_{tag}_w",
        amount=-s_amount,
        fee=DISPUTE_FEE,
        source=du,
        created=start + 1,
        type="adjustment",
        reporting_category="dispute",
        currency=s_cur,
    )
    reinstated = balance_transaction(
        f"txn_du_{tag}_r",
        amount=s_amount,
        fee=-DISPUTE_FEE,
        source=du,
        created=start + 20 * DAY,
        type="adjustment",
        reporting_category="dispute_reversal",
        currency=s_cur,
    )
    s.facts.update(dispute=du)
    s.add(
        "charge.dispute.created",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            currency=currency,
            created=start,
            status="needs_response",
            balance_transactions=[],
        ),
        start + 1,
    )
    s.add(
        "charge.dispute.funds_withdrawn",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            currency=currency,
            created=start,
            status="needs_response",
            balance_transactions=[withdrawal],
        ),
        start + 2,
    )
    s.add(
        "charge.dispute.funds_reinstated",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            currency=currency,
            created=start,
            status="won",
            balance_transactions=[withdrawal, reinstated],
        ),
        start + 20 * DAY,
    )
    s.add(
        "charge.dispute.closed",
        dispute(
            du,
            charge_id=charge_id,
            amount=amount,
            currency=currency,
            created=start,
            status="won",
            balance_transactions=[withdrawal, reinstated],
        ),
        start + 20 * DAY + 1,
    )
    return s


def payout_paid(tag: str, amount: int, *, start: int, stripe_fee: int = 0) -> Scenario:
    """A payout (its balance transaction fetched), then its reconciliation:
    listing the payout's transactions, which may hold a Stripe fee."""
    s = Scenario()
    po, txn = f"po_{tag}", f"txn_po_{tag}"
    s.facts.update(payout=po, txn=txn)
    bt = balance_transaction(txn, amount=-amount, fee=0, source=po, created=start, type="payout")
    s.get(f"/balance_transactions/{txn}", bt)
    listed = [bt]
    if stripe_fee:
        listed.append(
            balance_transaction(
                f"txn_fee_{tag}",
                amount=-stripe_fee,
                fee=0,
                source=None,
                created=start - DAY,
                type="stripe_fee",
                reporting_category="fee",
            )
        )
    s.get(
        "/balance_transactions",
        {"object": "list", "data": listed, "has_more": False},
        query={"payout": po, "limit": "100"},
    )
    s.add(
        "payout.paid",
        payout(po, amount=amount, created=start, status="paid", balance_transaction=txn),
        start + 2 * DAY,
    )
    s.add(
        "payout.reconciliation_completed",
        payout(po, amount=amount, created=start, status="paid", balance_transaction=txn),
        start + 2 * DAY + 1,
    )
    return s


def payout_failed(tag: str, amount: int, *, start: int) -> Scenario:
    s = Scenario()
    po, txn, fail = f"po_{tag}", f"txn_po_{tag}", f"txn_pofail_{tag}"
    s.facts.update(payout=po)
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=-amount, fee=0, source=po, created=start, type="payout"),
    )
    s.get(
        f"/balance_transactions/{fail}",
        balance_transaction(
            fail, amount=amount, fee=0, source=po, created=start + 3 * DAY, type="payout_failure"
        ),
    )
    s.add(
        "payout.failed",
        payout(
            po,
            amount=amount,
            created=start,
            status="failed",
            balance_transaction=txn,
            failure_balance_transaction=fail,
        ),
        start + 3 * DAY,
    )
    return s


def old_version_membership(tag: str, *, amount: int = 1000, start: int = T0) -> Scenario:
    """A membership payment in 2017-08-15 shapes (localstripe's): the invoice
    names its charge and subscription, the payment intent lists its charges
    and names its invoice; no charge.* events."""
    s = Scenario()
    sub, cus, inv = f"sub_{tag}", f"cus_{tag}", f"in_{tag}"
    pi, ch, txn = f"pi_{tag}", f"ch_{tag}", f"txn_{tag}"
    email = f"{tag}@example.org"
    s.facts.update(subscription=sub, charge=ch, email=email, amount=amount, txn=txn)
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=amount, fee=fee_for(amount), source=ch, created=start + 2),
    )
    s.get(f"/customers/{cus}", {"id": cus, "object": "customer", "email": email, "name": None})
    s.get(
        f"/invoices/{inv}",
        invoice(
            inv,
            customer=cus,
            subscription_id=sub,
            created=start + 1,
            amount=amount,
            email=email,
            old_shape=True,
            old_charge=ch,
            old_payment_intent=pi,
            billing_reason="subscription_create",
        ),
    )
    ch_obj = charge(
        ch,
        amount=amount,
        created=start + 2,
        payment_intent=pi,
        customer=cus,
        email=None,
        balance_transaction=txn,
        old_invoice=inv,
    )
    s.add(
        "customer.subscription.created",
        subscription(
            sub,
            customer=cus,
            created=start,
            status="active",
            amount=amount,
            period_end=start + 30 * DAY,
            old_shape=True,
        ),
        start + 1,
        api_version=OLD_API_VERSION,
    )
    s.add(
        "invoice.payment_succeeded",
        invoice(
            inv,
            customer=cus,
            subscription_id=sub,
            created=start + 1,
            amount=amount,
            email=email,
            old_shape=True,
            old_charge=ch,
            old_payment_intent=pi,
            billing_reason="subscription_create",
        ),
        start + 3,
        api_version=OLD_API_VERSION,
    )
    s.add(
        "payment_intent.succeeded",
        payment_intent(
            pi,
            amount=amount,
            created=start + 1,
            latest_charge=None,
            customer=cus,
            old_charges=[ch_obj],
            old_invoice=inv,
        ),
        start + 3,
        api_version=OLD_API_VERSION,
    )
    return s


def old_version_one_time(tag: str, *, amount: int = 3000, start: int = T0) -> Scenario:
    """A one-time payment in an old version's shape: the charge says it paid
    no invoice (`invoice: null`) and has its balance transaction, expanded in
    the refund list era (charge.refunds included)."""
    s = Scenario()
    ch, pi, txn = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}"
    email = f"{tag}@example.org"
    s.facts.update(charge=ch, email=email, amount=amount)
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=amount, fee=fee_for(amount), source=ch, created=start),
    )
    s.add(
        "charge.succeeded",
        charge(
            ch,
            amount=amount,
            created=start,
            payment_intent=pi,
            email=email,
            balance_transaction=txn,
            old_invoice=None,
        ),
        start + 1,
        api_version=BASIL_PREDECESSOR,
    )
    s.add(
        "payment_intent.succeeded",
        payment_intent(pi, amount=amount, created=start - 1, latest_charge=ch, old_invoice=None),
        start + 1,
        api_version=BASIL_PREDECESSOR,
    )
    return s


def one_off_invoice_payment(
    tag: str, *, amount: int = 4000, start: int = T0, old_shape: bool = False
) -> Scenario:
    """A payment of an invoice no subscription is behind (one sent from the
    Dashboard): current shapes (the charge says nothing, an invoice payment
    links them, the invoice has no parent) or, with `old_shape`, a version
    before 2025-03-31 (`charge.invoice`, `invoice.subscription` null)."""
    s = Scenario()
    ch, pi, txn, cus, inv = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}", f"cus_{tag}", f"in_{tag}"
    email = f"{tag}@example.org"
    version = BASIL_PREDECESSOR if old_shape else API_VERSION
    s.facts.update(charge=ch, invoice=inv, email=email, amount=amount)
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=amount, fee=fee_for(amount), source=ch, created=start + 2),
    )
    s.get(f"/customers/{cus}", {"id": cus, "object": "customer", "email": email, "name": None})
    inv_obj = invoice(
        inv,
        customer=cus,
        subscription_id=None,
        created=start,
        amount=amount,
        email=email,
        billing_reason="manual",
        old_shape=old_shape,
        old_charge=ch,
        old_payment_intent=pi,
    )
    s.get(f"/invoices/{inv}", inv_obj)
    paying = invoice_payment(
        f"inpay_{tag}", invoice_id=inv, payment_intent=pi, amount=amount, created=start + 1
    )
    stub_invoice_payments(s, pi, [paying])
    s.add(
        "charge.succeeded",
        charge(
            ch,
            amount=amount,
            created=start + 2,
            payment_intent=pi,
            customer=cus,
            email=email,
            balance_transaction=txn,
            old_invoice=inv if old_shape else False,
        ),
        start + 3,
        api_version=version,
    )
    s.add(
        "payment_intent.succeeded",
        payment_intent(
            pi,
            amount=amount,
            created=start + 1,
            latest_charge=ch,
            customer=cus,
            old_invoice=inv if old_shape else False,
        ),
        start + 3,
        api_version=version,
    )
    if not old_shape:
        s.add("invoice_payment.paid", paying, start + 4)
    s.add("invoice.paid", inv_obj, start + 4, api_version=version)
    return s


def manual_capture(
    tag: str, *, amount: int = 2500, captured: int | None, start: int = T0
) -> Scenario:
    """A payment intent with capture_method manual, not from our form: the
    charge succeeds uncaptured (an authorisation), then it is captured
    (`captured` of `amount`; Stripe releases the rest, counting it in
    `amount_refunded`) or, with `captured` None, released: the hold expires
    (charge.expired, charge.refunded uncaptured) and the intent is canceled."""
    s = Scenario()
    ch, pi, txn, cus = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}", f"cus_{tag}"
    email = f"{tag}@example.org"
    s.facts.update(charge=ch, email=email)
    stub_invoice_payments(s, pi, [])
    held = charge(
        ch,
        amount=amount,
        created=start,
        payment_intent=pi,
        customer=cus,
        email=email,
        captured=False,
    )
    intent = {
        **payment_intent(
            pi,
            amount=amount,
            created=start - 1,
            latest_charge=ch,
            customer=cus,
            status="requires_capture",
        ),
        "amount_received": 0,
        "capture_method": "manual",
    }
    s.add("charge.succeeded", held, start + 1)
    s.add("payment_intent.amount_capturable_updated", intent, start + 1)
    if captured is None:
        released = {**held, "refunded": True, "amount_refunded": amount}
        s.add("charge.expired", released, start + 7 * DAY)
        s.add("charge.refunded", released, start + 7 * DAY)
        s.add(
            "refund.created",
            reversal(f"re_{tag}_rel", charge_id=ch, amount=amount, created=start + 7 * DAY),
            start + 7 * DAY,
        )
        s.add("payment_intent.canceled", {**intent, "status": "canceled"}, start + 7 * DAY)
        return s
    at = start + DAY
    s.get(
        f"/balance_transactions/{txn}",
        balance_transaction(txn, amount=captured, fee=fee_for(captured), source=ch, created=at),
    )
    done = {
        **held,
        "captured": True,
        "amount_captured": captured,
        "amount_refunded": amount - captured,
        "balance_transaction": txn,
    }
    s.add("charge.captured", done, at + 1)
    s.add(
        "payment_intent.succeeded",
        {**intent, "status": "succeeded", "amount_received": captured},
        at + 1,
    )
    s.add("charge.updated", done, at + 2, previous_attributes={"amount_captured": 0})
    s.add(
        "refund.created",
        reversal(f"re_{tag}_rest", charge_id=ch, amount=amount - captured, created=at),
        at + 2,
    )
    return s


def reversal(refund_id: str, *, charge_id: str, amount: int, created: int) -> dict[str, Any]:
    """The refund Stripe makes of an authorisation's uncaptured amount (a
    released hold, or the rest of a partial capture): the hold is reversed,
    no money moved, so it has no balance transaction."""
    obj = refund(
        refund_id,
        charge_id=charge_id,
        amount=amount,
        created=created,
        balance_transaction=None,
        reason=None,
    )
    obj["destination_details"] = {"type": "card", "card": {"type": "reversal"}}
    return obj


def full_sequence(start: int = T0) -> Scenario:
    """One-time payment, membership with a renewal, a partial refund, a lost
    dispute and a payout: the permutation test's material."""
    once = one_time_donation("seq_once", amount=2500, start=start)
    member = membership("seq_member", amount=1000, start=start + 100, renewals=1)
    refunds = partial_refunds(once.facts["charge_object"], [500], start=start + DAY, tag="seq")
    dispute = dispute_lost(member.facts["charges"][0], 1000, start=start + 2 * DAY, tag="seq")
    payout = payout_paid("seq", 1000, start=start + 3 * DAY, stripe_fee=200)
    s = once + member + refunds + dispute + payout
    s.facts["once"], s.facts["member"] = once.facts, member.facts
    return s


def settled_figures(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`ledger.summary`'s currencies without `unsettled`: the figures the
    finance reports' totals (app.finance.reports.Figures) carry."""
    return {
        currency: {k: v for k, v in figures.items() if k != "unsettled"}
        for currency, figures in summary["currencies"].items()
    }
