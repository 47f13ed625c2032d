"""The seed's money: payments, refunds, disputes, payouts and Stripe's monthly
fee, with their balance transactions, each posted as an `Op` through the writer.
Never writes a journal entry directly; posting.py owns how entries are written."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.ledger import BalanceTxn
from app.seed.posting import Op
from app.seed.timeline import Timeline, add_months

# Stripe's card pricing per currency: basis points and a fixed part (minor units).
FEES = {"usd": (290, 30), "eur": (150, 25), "gbp": (150, 20), "jpy": (360, 0)}
DISPUTE_FEES = {"usd": 1500, "eur": 2000, "gbp": 2000, "jpy": 2000}
JPY_PER_USD = 150  # half of the yen gifts settle converted into the usd balance


def processing_fee(currency: str, amount_minor: int) -> int:
    rate_bp, fixed = FEES.get(currency, FEES["usd"])
    return (amount_minor * rate_bp + 5_000) // 10_000 + fixed


class SeedPayments(Timeline):
    """Charges, refunds, disputes and payouts, and the ledger operations they post."""

    def settlement_currency(self, currency: str) -> str:
        if currency == "jpy" and self.rng.random() < 0.5:
            return "usd"
        return currency

    @staticmethod
    def convert(amount: int, currency: str, settle_in: str) -> int:
        if currency == settle_in:
            return amount
        return (amount * 100 + JPY_PER_USD // 2) // JPY_PER_USD  # jpy -> usd cents

    def txn(
        self,
        kind: str,
        currency: str,
        amount: int,
        fee: int,
        at: datetime,
        source: str | None,
        *,
        paid_out: bool = True,
    ) -> BalanceTxn:
        txn = BalanceTxn(
            id=self.stripe_id("txn"),
            type=kind,
            currency=currency,
            amount_minor=amount,
            fee_minor=fee,
            net_minor=amount - fee,
            created_at=at,
            source=source,
        )
        if paid_out:  # the week's payout takes it
            self.weekly_net[(currency, self.week(at))] += txn.net_minor
        return txn

    # -- money

    def add_payment(
        self,
        donor: tuple[int, str, str, str],
        *,
        currency: str,
        amount: int,
        at: datetime,
        checkout_id: str | None,
        subscription_id: str | None,
        invoice_id: str | None,
    ) -> None:
        donor_id = donor[0]
        charge_id = self.stripe_id("ch")
        kind = "membership" if subscription_id else "once"
        settle_in = self.settlement_currency(currency)
        status = "succeeded"
        refunds: list[int] = []
        roll = self.rng.random()
        if roll < 0.025:
            refunds = [amount]
            status = "refunded"
        elif roll < 0.037:
            refunds = [max(1, amount // 2)]
            status = "partially_refunded"
        elif roll < 0.041:
            refunds = [max(1, amount * 3 // 10), max(1, amount // 5)]
            status = "partially_refunded"
        disputed = not refunds and settle_in == currency and roll > 0.995
        if disputed:
            status = "disputed"
        self.writer.add(
            "payments",
            {
                "id": self.writer.new_id("payments"),
                "stripe_charge_id": charge_id,
                "stripe_payment_intent_id": self.stripe_id("pi"),
                "stripe_invoice_id": invoice_id,
                "stripe_subscription_id": subscription_id,
                "stripe_customer_id": donor[3],
                "donor_id": donor_id,
                "checkout_id": checkout_id,
                "kind": kind,
                "amount_minor": amount,
                "currency": currency,
                "status": status,
                "livemode": False,
                "stripe_created_at": at,
                "created_at": at,
                "updated_at": at,
            },
        )
        entry_kind = "membership_payment" if subscription_id else "donation"
        self.writer.post(
            Op(
                "recognise_payment",
                (),
                {
                    "charge_id": charge_id,
                    "kind": entry_kind,
                    "currency": currency,
                    "amount_minor": amount,
                    "occurred_at": at,
                    "donor_id": donor_id,
                },
            )
        )
        settled = self.convert(amount, currency, settle_in)
        txn = self.txn(
            "charge", settle_in, settled, processing_fee(settle_in, settled), at, charge_id
        )
        self.writer.post(
            Op(
                "settle",
                (txn,),
                {
                    "object_id": charge_id,
                    "object_currency": currency,
                    "object_amount_minor": amount,
                    "charge_id": charge_id,
                    "donor_id": donor_id,
                },
            )
        )
        self.result.payments += 1
        self.result.by_kind[entry_kind] += 1
        self.pending += 1
        when = at
        for refund_amount in refunds:
            when = when + timedelta(
                days=self.rng.randrange(1, 20), seconds=self.rng.randrange(86400)
            )
            if when >= self.now:
                break
            self.add_refund(donor_id, charge_id, currency, settle_in, refund_amount, when)
        if disputed:
            self.add_dispute(donor_id, charge_id, currency, amount, at)

    def add_refund(
        self,
        donor_id: int,
        charge_id: str,
        currency: str,
        settle_in: str,
        amount: int,
        at: datetime,
    ) -> None:
        refund_id = self.stripe_id("re")
        failed = self.rng.random() < 0.02 and at + timedelta(days=5) < self.now
        self.writer.add(
            "refunds",
            {
                "id": self.writer.new_id("refunds"),
                "stripe_refund_id": refund_id,
                "stripe_charge_id": charge_id,
                "amount_minor": amount,
                "currency": currency,
                "status": "failed" if failed else "succeeded",
                "reason": "requested_by_customer",
                "stripe_created_at": at,
                "created_at": at,
                "updated_at": at,
            },
        )
        self.writer.post(
            Op(
                "recognise_refund",
                (),
                {
                    "refund_id": refund_id,
                    "charge_id": charge_id,
                    "currency": currency,
                    "amount_minor": amount,
                    "occurred_at": at,
                    "donor_id": donor_id,
                },
            )
        )
        settled = -self.convert(amount, currency, settle_in)
        txn = self.txn("refund", settle_in, settled, 0, at, refund_id)
        self.writer.post(
            Op(
                "settle",
                (txn,),
                {
                    "object_id": refund_id,
                    "object_currency": currency,
                    "object_amount_minor": -amount,
                    "charge_id": charge_id,
                    "donor_id": donor_id,
                },
            )
        )
        self.result.refunds += 1
        if failed:
            back = self.txn(
                "refund_failure", settle_in, -settled, 0, at + timedelta(days=4), refund_id
            )
            self.writer.post(
                Op(
                    "post_movement",
                    (back, "refund_failure"),
                    {"object_id": refund_id, "charge_id": charge_id, "donor_id": donor_id},
                )
            )

    def add_dispute(
        self, donor_id: int, charge_id: str, currency: str, amount: int, charged_at: datetime
    ) -> None:
        opened = charged_at + timedelta(days=self.rng.randrange(5, 60))
        if opened >= self.now:
            return
        dispute_id = self.stripe_id("dp")
        closed = opened + timedelta(days=self.rng.randrange(20, 75))
        outcome = None
        if closed < self.now:
            outcome = "won" if self.rng.random() < 0.4 else "lost"
        fee = DISPUTE_FEES[currency]
        self.writer.add(
            "disputes",
            {
                "id": self.writer.new_id("disputes"),
                "stripe_dispute_id": dispute_id,
                "stripe_charge_id": charge_id,
                "amount_minor": amount,
                "currency": currency,
                "status": outcome or "needs_response",
                "reason": self.rng.choice(("fraudulent", "product_not_received", "duplicate")),
                "outcome": outcome,
                "last_event_created_at": closed if outcome else opened,
                "stripe_created_at": opened,
                "created_at": opened,
                "updated_at": closed if outcome else opened,
            },
        )
        withdrawal = self.txn("adjustment", currency, -amount, fee, opened, dispute_id)
        self.writer.post(
            Op(
                "post_movement",
                (withdrawal, "dispute"),
                {"object_id": dispute_id, "charge_id": charge_id, "donor_id": donor_id},
            )
        )
        if outcome == "won":
            back = self.txn("adjustment", currency, amount, 0, closed, dispute_id)
            self.writer.post(
                Op(
                    "post_movement",
                    (back, "dispute_reversal"),
                    {"object_id": dispute_id, "charge_id": charge_id, "donor_id": donor_id},
                )
            )
        self.result.disputes += 1

    # -- payouts and Stripe's own fees, once every movement is known

    def payouts(self) -> None:
        fee_month = add_months(self.start, 1)
        while fee_month < self.now:
            txn = self.txn("stripe_fee", "usd", -500, 0, fee_month, None)
            object_id = txn.id
            self.writer.post(Op("post_movement", (txn, "stripe_fee"), {"object_id": object_id}))
            fee_month = add_months(fee_month, 1)
        weeks = self.week(self.now) + 1
        for currency in sorted({currency for currency, _ in self.weekly_net}):
            balance = 0
            for week in range(weeks):
                balance += self.weekly_net.get((currency, week), 0)
                paid_at = self.start + timedelta(days=7 * week + 9)
                if balance <= 0 or paid_at >= self.now:
                    continue
                payout_id = self.stripe_id("po")
                failed = self.rng.random() < 0.01 and paid_at + timedelta(days=3) < self.now
                self.writer.add(
                    "payouts",
                    {
                        "id": self.writer.new_id("payouts"),
                        "stripe_payout_id": payout_id,
                        "amount_minor": balance,
                        "currency": currency,
                        "status": "failed" if failed else "paid",
                        "arrival_at": paid_at + timedelta(days=2),
                        "stripe_created_at": paid_at,
                        "created_at": paid_at,
                        "updated_at": paid_at + timedelta(days=2),
                    },
                )
                out = self.txn("payout", currency, -balance, 0, paid_at, payout_id, paid_out=False)
                self.writer.post(Op("post_movement", (out, "payout"), {"object_id": payout_id}))
                self.result.payouts += 1
                if failed:
                    back = self.txn(
                        "payout_failure",
                        currency,
                        balance,
                        0,
                        paid_at + timedelta(days=3),
                        payout_id,
                        paid_out=False,
                    )
                    self.writer.post(
                        Op("post_movement", (back, "payout_failure"), {"object_id": payout_id})
                    )
                    # The money is back in the balance: a later payout takes it.
                    self.weekly_net[(currency, self.week(back.created_at))] += balance
                balance = 0
