"""The seeding loop: one-time readers and members (monthly, yearly) until the
target number of payments, then payouts; `seed_database` is the entry point.
Commits once per batch (a seed is an edge, like a CLI command); never in production."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.ledger import JournalEntry
from app.seed.payments import SeedPayments
from app.seed.people import CURRENCIES, MONTH_AMOUNTS, ONCE_AMOUNTS, YEAR_AMOUNTS, SeedPeople
from app.seed.posting import TABLES
from app.seed.timeline import SeedResult, add_months, weighted


class _Seeder(SeedPeople, SeedPayments):
    """Readers, one after another, until the run has its payments."""

    # -- readers

    def one_time_reader(self) -> None:
        currency = weighted(self.rng, CURRENCIES)
        gifts = sorted(self.moment() for _ in range(self.rng.choices((1, 2, 3), (70, 20, 10))[0]))
        gifts = gifts[: self.target - self.result.payments]
        donor = self.add_donor(gifts[0])
        for at in gifts:
            checkout_id, total = self.add_checkout(
                donor,
                frequency="once",
                currency=currency,
                amount=self.amount(ONCE_AMOUNTS, currency),
                at=at - timedelta(minutes=2),
                status="complete",
                attribution=self.attribution(),
            )
            self.add_payment(
                donor,
                currency=currency,
                amount=total,
                at=at,
                checkout_id=checkout_id,
                subscription_id=None,
                invoice_id=None,
            )
        self.add_abandoned(donor, "once", currency)

    def member(self, interval: str) -> None:
        currency = weighted(self.rng, CURRENCIES)
        step = 1 if interval == "month" else 12
        started = self.moment()
        donor = self.add_donor(started)
        amounts = MONTH_AMOUNTS if interval == "month" else YEAR_AMOUNTS
        checkout_id, total = self.add_checkout(
            donor,
            frequency=interval,
            currency=currency,
            amount=self.amount(amounts, currency),
            at=started - timedelta(minutes=2),
            status="complete",
            attribution=self.attribution(),
        )
        subscription_id = self.stripe_id("sub")
        status, canceled_at, cancel_at_period_end = "active", None, False
        churn = 0.03 if step == 1 else 0.2
        period, paid, at = 0, 0, started
        last_paid = started
        while at < self.now and self.result.payments < self.target:
            invoice_id = self.stripe_id("in")
            failed = self.rng.random() < 0.01 and period > 0
            self.writer.add(
                "invoices",
                {
                    "id": self.writer.new_id("invoices"),
                    "stripe_invoice_id": invoice_id,
                    "stripe_subscription_id": subscription_id,
                    "stripe_customer_id": donor[3],
                    "status": "open" if failed else "paid",
                    "billing_reason": "subscription_cycle" if period else "subscription_create",
                    "created_at": at,
                    "updated_at": at,
                },
            )
            if failed:
                status = "past_due"
                break
            self.add_payment(
                donor,
                currency=currency,
                amount=total,
                at=at,
                checkout_id=checkout_id if period == 0 else None,
                subscription_id=subscription_id,
                invoice_id=invoice_id,
            )
            paid += 1
            last_paid = at
            period += 1
            at = add_months(started, period * step)
            if self.rng.random() < churn and at < self.now:
                status, canceled_at = "canceled", at
                break
        if status == "active" and self.rng.random() < 0.05:
            cancel_at_period_end = True
            canceled_at = self.moment(last_paid)
        period_end = add_months(last_paid, step)
        self.writer.add(
            "memberships",
            {
                "id": self.writer.new_id("memberships"),
                "stripe_subscription_id": subscription_id,
                "stripe_customer_id": donor[3],
                "donor_id": donor[0],
                "checkout_id": checkout_id,
                "status": status,
                "amount_minor": total,
                "currency": currency,
                "interval": interval,
                "current_period_end": period_end,
                "cancel_at_period_end": cancel_at_period_end,
                "canceled_at": canceled_at,
                "ended_at": canceled_at if status == "canceled" else None,
                "livemode": False,
                "last_event_created_at": canceled_at or last_paid,
                "last_stripe_event_id": None,
                "created_at": started,
                "updated_at": canceled_at or last_paid,
            },
        )
        self.result.memberships += 1
        self.add_abandoned(donor, interval, currency)

    # -- the loop

    def flush(self, final: bool = False) -> None:
        self.writer.flush()
        self.session.commit()
        self.pending = 0
        if self.progress is not None:
            elapsed = time.monotonic() - self.started
            rate = self.result.payments / elapsed if elapsed else 0.0
            label = "done" if final else "seeding"
            self.progress(
                f"{label}: {self.result.payments:,}/{self.target:,} payments, "
                f"{self.result.donors:,} donors, {elapsed:,.1f} s ({rate:,.0f} payments/s)"
            )

    def run(self) -> SeedResult:
        while self.result.payments < self.target:
            roll = self.rng.random()
            if roll < 0.85:
                self.one_time_reader()
            elif roll < 0.97:
                self.member("month")
            else:
                self.member("year")
            if self.pending >= self.batch:
                self.flush()
        self.payouts()
        self.flush(final=True)
        # Fresh statistics, or the planner takes the freshly filled tables for
        # empty ones (nested loops over a million rows) until autovacuum runs.
        for name in TABLES:
            self.session.execute(text(f"ANALYZE {name}"))
        self.session.commit()
        self.writer.finish()  # the daily totals, once
        self.session.execute(text("ANALYZE ledger_daily_totals"))
        self.session.commit()
        if self.progress is not None:
            self.progress(f"daily totals rebuilt: {time.monotonic() - self.started:,.1f} s")
        self.result.entries = int(self.session.scalar(select(func.count(JournalEntry.id))) or 0)
        self.result.seconds = time.monotonic() - self.started
        return self.result


def seed_database(
    session: Session,
    *,
    payments: int,
    seed: int = 1,
    months: int = 24,
    now: datetime | None = None,
    exact: bool = False,
    batch: int = 5000,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Fill the database with `payments` successful payments (one-time and
    membership renewals) and everything around them, spread over the last
    `months`; the same `seed` and `now` give the same data. Commits every
    `batch` payments (a seed is an edge, like a CLI command). `exact` posts
    each entry through app.ledger's functions instead of in batches."""
    if payments < 0:
        raise ValueError("payments must not be negative")
    if months < 1:
        raise ValueError("months must be at least 1")
    seeder = _Seeder(
        session,
        payments=payments,
        seed=seed,
        months=months,
        now=now or utcnow(),
        exact=exact,
        batch=max(1, batch),
        progress=progress,
    )
    return seeder.run()
