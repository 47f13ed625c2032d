"""The seeding run's clock and state: the span of months, random moments and
weeks within it, fresh Stripe-style ids, and the counts it reports (`SeedResult`).
Never writes a row itself; people.py and payments.py add records on top of it."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.seed.posting import Writer


def weighted(rng: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    values = [value for value, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(values, weights)[0]


def add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


@dataclass
class SeedResult:
    payments: int = 0
    donors: int = 0
    memberships: int = 0
    refunds: int = 0
    disputes: int = 0
    payouts: int = 0
    checkouts: int = 0
    entries: int = 0
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Timeline:
    """One seeding run's state: its clock, random source, writer and counts."""

    def __init__(
        self,
        session: Session,
        *,
        payments: int,
        seed: int,
        months: int,
        now: datetime,
        exact: bool,
        batch: int,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.session = session
        self.target = payments
        self.rng = random.Random(seed)
        self.now = now.astimezone(UTC).replace(microsecond=0)
        self.start = add_months(self.now, -months)
        self.span = (self.now - self.start).total_seconds()
        self.writer = Writer(session, exact=exact)
        self.batch = batch
        self.progress = progress
        self.result = SeedResult()
        # Ids unique to this run, so a second seed on the same database adds to it.
        self.tag = f"sd{seed}x{self.writer.next_id['donors']}"
        self.counter = 0
        self.weekly_net: dict[tuple[str, int], int] = defaultdict(int)
        self.pending = 0
        self.started = time.monotonic()

    # -- helpers

    def stripe_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.tag}{self.counter:09d}"

    def moment(self, low: datetime | None = None) -> datetime:
        low = low or self.start
        seconds = (self.now - low).total_seconds()
        return low + timedelta(seconds=int(self.rng.random() * seconds))

    def week(self, moment: datetime) -> int:
        return int((moment - self.start).total_seconds() // (7 * 86400))

    def amount(self, table: dict[str, tuple[int, ...]], currency: str) -> int:
        choices = table["jpy" if currency == "jpy" else "usd"]
        if currency != "jpy" and self.rng.random() < 0.15:
            return self.rng.randrange(3, 500) * 100
        return self.rng.choice(choices)
