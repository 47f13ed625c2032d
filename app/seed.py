"""Demo and benchmark data: realistic donors, one-time gifts, memberships with
renewals, refunds, disputes, payouts and checkouts, posted through the
ledger's own rules so `donations ledger verify` passes afterwards.

Never for production data: every donor is fake (example.org). Two ways to
write: `exact` calls app.ledger's posting functions one entry at a time (the
webhook handlers' path); `bulk` builds the same entries with the same lines
and balance checks and writes them in batches (COPY on PostgreSQL), for
millions of rows. Tests hold the two to identical journals. No Flask.
"""

from __future__ import annotations

import random
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from app import ledger, ledger_totals
from app.clock import utcnow
from app.db import Base
from app.ledger import BalanceTxn, JournalEntry, LedgerError, Line, Movement, check_balanced

EMAIL_DOMAIN = "example.org"

# Tables written here, parents first (foreign keys), with integer ids we assign.
TABLES = (
    "donors",
    "stripe_customers",
    "checkouts",
    "memberships",
    "payments",
    "invoices",
    "refunds",
    "disputes",
    "payouts",
    "journal_entries",
    "journal_postings",
)
_INTEGER_IDS = tuple(t for t in TABLES if t != "checkouts")

CURRENCIES = (("usd", 55), ("eur", 25), ("gbp", 15), ("jpy", 5))
ONCE_AMOUNTS = {
    "usd": (500, 1000, 2000, 2500, 5000, 10000, 25000),
    "jpy": (1000, 3000, 5000, 10000, 30000),
}
MONTH_AMOUNTS = {"usd": (300, 500, 1000, 1500, 2500), "jpy": (500, 1000, 2000)}
YEAR_AMOUNTS = {"usd": (5000, 10000, 12000, 25000), "jpy": (5000, 10000, 20000)}
# Stripe's card pricing per currency: basis points and a fixed part (minor units).
FEES = {"usd": (290, 30), "eur": (150, 25), "gbp": (150, 20), "jpy": (360, 0)}
DISPUTE_FEES = {"usd": 1500, "eur": 2000, "gbp": 2000, "jpy": 2000}
JPY_PER_USD = 150  # half of the yen gifts settle converted into the usd balance

CAMPAIGNS = (
    (None, 30),
    ("year-end-2025", 20),
    ("spring-appeal-2026", 15),
    ("investigations-fund", 15),
    ("newsletter-drive", 10),
    ("local-elections", 10),
)
UTM_SOURCES = (
    (None, 25),
    ("newsletter", 30),
    ("homepage", 15),
    ("article", 15),
    ("mastodon", 5),
    ("facebook", 5),
    ("partner-site", 5),
)
FIRST_NAMES = (
    "Ada", "Amara", "Anna", "Ben", "Carlos", "Chen", "Dmitri", "Elif", "Emma", "Fatima",
    "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lea", "Liam", "Maja", "Mateo", "Mei",
    "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael", "Sara", "Sofía", "Tom", "Yuki",
    "Zoë", "Åsa", "Анна", "Иван",
)  # fmt: skip
LAST_NAMES = (
    "Adeyemi", "Becker", "Brown", "Costa", "Dubois", "Fischer", "García", "Hansen",
    "Ivanova", "Jensen", "Kato", "Kowalski", "López", "Müller", "Nguyen", "O'Brien",
    "Petrov", "Rossi", "Schmidt", "Silva", "Smith", "Tanaka", "Wang", "Øvergaard",
    "Смирнов",
)  # fmt: skip


def _slug(text_: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_.lower() if ch.isalnum())


def processing_fee(currency: str, amount_minor: int) -> int:
    rate_bp, fixed = FEES.get(currency, FEES["usd"])
    return (amount_minor * rate_bp + 5_000) // 10_000 + fixed


def _weighted(rng: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    values = [value for value, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(values, weights)[0]


def _add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


# ---------------------------------------------------------------------------
# Ledger operations: what the webhook handlers would call, recorded as data so
# they can be applied one by one (exact) or prepared in batches (bulk).


@dataclass(frozen=True)
class Op:
    name: str  # recognise_payment, recognise_refund, settle, post_movement
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def apply_exact(session: Session, op: Op) -> None:
    """The posting functions the webhook handlers use, one entry per call."""
    function: Callable[..., bool] = getattr(ledger, op.name)
    function(session, *op.args, **op.kwargs)


@dataclass(frozen=True)
class Draft:
    """An entry as app.ledger.post_entry would write it."""

    key: str
    kind: str
    occurred_at: datetime
    stripe_object_id: str
    movement: Movement
    lines: list[Line]
    donor_id: int | None = None
    stripe_charge_id: str | None = None
    stripe_balance_transaction_id: str | None = None


def draft_entry(op: Op) -> Draft:
    """The entry an operation posts, with the same key, lines and checks as
    app.ledger's function of that name (tests compare the two paths)."""
    kw = op.kwargs
    if op.name == "recognise_payment":
        if kw["kind"] not in ledger.PAYMENT_KINDS:
            raise LedgerError(f"{kw['kind']!r} is not a payment kind")
        revenue = "revenue_donations" if kw["kind"] == "donation" else "revenue_memberships"
        cur, amount = kw["currency"], kw["amount_minor"]
        return Draft(
            f"charge:{kw['charge_id']}",
            kw["kind"],
            kw["occurred_at"],
            kw["charge_id"],
            Movement(cur, amount),
            [Line("stripe_receivable", cur, amount), Line(revenue, cur, -amount)],
            kw["donor_id"],
            kw["charge_id"],
        )
    if op.name == "recognise_refund":
        cur, amount = kw["currency"], kw["amount_minor"]
        return Draft(
            f"refund:{kw['refund_id']}",
            "refund",
            kw["occurred_at"],
            kw["refund_id"],
            Movement(cur, -amount),
            [Line("refunds", cur, amount), Line("stripe_receivable", cur, -amount)],
            kw["donor_id"],
            kw["charge_id"],
        )
    txn: BalanceTxn = op.args[0]
    figures = Movement(txn.currency, txn.amount_minor, txn.fee_minor, txn.net_minor)
    if op.name == "settle":
        lines = [
            Line("stripe_balance", txn.currency, txn.net_minor),
            Line("fees_processing", txn.currency, txn.fee_minor),
            Line("stripe_receivable", kw["object_currency"], -kw["object_amount_minor"]),
        ]
        if txn.currency != kw["object_currency"]:
            lines = ledger._fx_balance(lines)
        elif txn.amount_minor != kw["object_amount_minor"]:
            raise LedgerError(f"balance transaction {txn.id} does not match {kw['object_id']}")
        return Draft(
            f"balance_transaction:{txn.id}",
            "settlement",
            txn.created_at,
            kw["object_id"],
            figures,
            lines,
            kw["donor_id"],
            kw["charge_id"],
            txn.id,
        )
    if op.name == "post_movement":
        kind = op.args[1]
        counter, fee_account = ledger._STANDALONE[kind]
        return Draft(
            f"balance_transaction:{txn.id}",
            kind,
            txn.created_at,
            kw["object_id"],
            figures,
            [
                Line("stripe_balance", txn.currency, txn.net_minor),
                Line(fee_account, txn.currency, txn.fee_minor),
                Line(counter, txn.currency, -txn.amount_minor),
            ],
            kw.get("donor_id"),
            kw.get("charge_id"),
            txn.id,
        )
    raise LedgerError(f"unknown operation {op.name!r}")


# ---------------------------------------------------------------------------
# Writing rows in batches


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


class _Writer:
    """Buffers rows per table and writes them in one batch per table: COPY on
    PostgreSQL, executemany elsewhere. Ids are assigned here (after the
    largest existing one) so children can point at parents without a round
    trip; PostgreSQL's sequences are moved past them at the end."""

    def __init__(self, session: Session, *, exact: bool) -> None:
        self.session = session
        self.exact = exact
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ops: list[Op] = []
        self.next_id = {
            name: int(session.scalar(select(func.coalesce(func.max(_table(name).c.id), 0))) or 0)
            + 1
            for name in _INTEGER_IDS
        }
        self.written: dict[str, int] = defaultdict(int)
        self.created_at = utcnow()

    def new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)

    def post(self, op: Op) -> None:
        if self.exact:
            self.ops.append(op)
            return
        draft = draft_entry(op)
        if draft.kind not in ledger.ENTRY_KINDS:
            raise LedgerError(f"unknown entry kind {draft.kind!r}")
        if draft.occurred_at.tzinfo is None:
            raise LedgerError("occurred_at must be timezone-aware")
        kept = [line for line in draft.lines if line.amount_minor != 0]
        check_balanced(kept)
        entry_id = self.new_id("journal_entries")
        movement = draft.movement
        self.add(
            "journal_entries",
            {
                "id": entry_id,
                "key": draft.key,
                "kind": draft.kind,
                "occurred_at": draft.occurred_at,
                "created_at": self.created_at,
                "donor_id": draft.donor_id,
                "stripe_object_id": draft.stripe_object_id,
                "stripe_charge_id": draft.stripe_charge_id,
                "stripe_balance_transaction_id": draft.stripe_balance_transaction_id,
                "currency": movement.currency,
                "amount_minor": movement.amount_minor,
                "fee_minor": movement.fee_minor,
                "net_minor": movement.net_minor,
            },
        )
        for line in kept:
            self.add(
                "journal_postings",
                {
                    "id": self.new_id("journal_postings"),
                    "entry_id": entry_id,
                    "account": line.account,
                    "currency": line.currency,
                    "amount_minor": line.amount_minor,
                    "donor_id": draft.donor_id,
                },
            )

    def flush(self) -> None:
        entries = self.rows.get("journal_entries")
        new_entries = (entries[0]["id"], entries[-1]["id"]) if entries else None
        for name in TABLES:
            rows = self.rows.pop(name, None)
            if not rows:
                continue
            if self.postgres:
                self._copy(name, rows)
            else:
                self.session.execute(insert(_table(name)), rows)
            self.written[name] += len(rows)
        if new_entries is not None:  # the daily totals move with the batch's entries
            ledger_totals.add_entries(self.session, *new_entries)
        for op in self.ops:
            apply_exact(self.session, op)
        if self.ops:
            self.written["journal_entries"] += len(self.ops)
        self.ops.clear()
        self.session.flush()
        self.move_sequences()

    def _copy(self, name: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        raw = self.session.connection().connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([row[column] for column in columns])

    def move_sequences(self) -> None:
        if not self.postgres:
            return
        for name in _INTEGER_IDS:
            table = _table(name)
            after = select(func.coalesce(func.max(table.c.id), 0) + 1).scalar_subquery()
            self.session.execute(
                select(func.setval(func.pg_get_serial_sequence(name, "id"), after, False))
            )


# ---------------------------------------------------------------------------
# The generator


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


class _Seeder:
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
        self.start = _add_months(self.now, -months)
        self.span = (self.now - self.start).total_seconds()
        self.writer = _Writer(session, exact=exact)
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

    def attribution(self) -> dict[str, str | None]:
        campaign = _weighted(self.rng, CAMPAIGNS)
        source = _weighted(self.rng, UTM_SOURCES)
        if campaign and self.rng.random() < 0.4:
            return {
                "campaign": campaign,
                "utm_source": source or "article",
                "utm_medium": "appeal",
                "utm_content": f"story-{self.rng.randrange(1, 400)}",
                "utm_term": self.rng.choice(("a", "b")),
            }
        medium = {"newsletter": "email", "mastodon": "social", "facebook": "social"}
        return {
            "campaign": campaign,
            "utm_source": source,
            "utm_medium": medium.get(source or "", "referral" if source else None),
            "utm_content": None,
            "utm_term": None,
        }

    # -- records

    def add_donor(self, first_seen: datetime) -> tuple[int, str, str, str]:
        donor_id = self.writer.new_id("donors")
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        name = f"{first} {last}"
        roll = self.rng.random()
        if roll < 0.002:
            name = f"=HYPERLINK({last})"  # a typed name a spreadsheet must not run
        elif roll < 0.03:
            name = ""
        email = f"{_slug(first) or 'reader'}.{_slug(last) or 'reader'}.{donor_id}@{EMAIL_DOMAIN}"
        customer = f"cus_{self.tag}{donor_id:09d}"
        self.writer.add(
            "donors",
            {
                "id": donor_id,
                "email": email,
                "name": name or None,
                "created_at": first_seen,
                "updated_at": first_seen,
            },
        )
        self.writer.add(
            "stripe_customers",
            {
                "id": self.writer.new_id("stripe_customers"),
                "stripe_customer_id": customer,
                "donor_id": donor_id,
                "livemode": False,
                "created_at": first_seen,
            },
        )
        self.result.donors += 1
        return donor_id, email, name, customer

    def add_checkout(
        self,
        donor: tuple[int, str, str, str],
        *,
        frequency: str,
        currency: str,
        amount: int,
        at: datetime,
        status: str,
        attribution: dict[str, str | None],
    ) -> tuple[str, int]:
        """A checkout record; returns its id and what the donor is charged."""
        checkout_id = self.stripe_id("co")
        cover = processing_fee(currency, amount) if self.rng.random() < 0.3 else 0
        self.writer.add(
            "checkouts",
            {
                "id": checkout_id,
                "donor_id": donor[0],
                "email": donor[1],
                "name": donor[2] or None,
                "frequency": frequency,
                "currency": currency,
                "amount_minor": amount,
                "fee_cover_minor": cover,
                "total_minor": amount + cover,
                "cover_fees": cover > 0,
                **attribution,
                "dedication_kind": None,
                "dedication_name": None,
                "anonymous": self.rng.random() < 0.05,
                "comment": None,
                "locale": "ru" if self.rng.random() < 0.1 else "en",
                "stripe_checkout_session_id": self.stripe_id("cs_test"),
                "stripe_checkout_url": None,
                "stripe_customer_id": donor[3] if status == "complete" else None,
                "livemode": False,
                "status": status,
                "created_at": at,
                "updated_at": at,
                "expires_at": at + timedelta(hours=24),
                "completed_at": at + timedelta(minutes=2) if status == "complete" else None,
            },
        )
        self.result.checkouts += 1
        return checkout_id, amount + cover

    def add_abandoned(
        self, donor: tuple[int, str, str, str], frequency: str, currency: str
    ) -> None:
        """Checkouts that never completed: for the campaigns' conversion."""
        roll = self.rng.random()
        if roll < 0.3:
            at = self.moment()
            status = "expired" if self.now - at > timedelta(hours=24) else "open"
            self.add_checkout(
                donor,
                frequency=frequency,
                currency=currency,
                amount=self.amount(ONCE_AMOUNTS, currency),
                at=at,
                status=status,
                attribution=self.attribution(),
            )

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

    # -- readers

    def one_time_reader(self) -> None:
        currency = _weighted(self.rng, CURRENCIES)
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
        currency = _weighted(self.rng, CURRENCIES)
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
            at = _add_months(started, period * step)
            if self.rng.random() < churn and at < self.now:
                status, canceled_at = "canceled", at
                break
        if status == "active" and self.rng.random() < 0.05:
            cancel_at_period_end = True
            canceled_at = self.moment(last_paid)
        period_end = _add_months(last_paid, step)
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

    # -- payouts and Stripe's own fees, once every movement is known

    def payouts(self) -> None:
        fee_month = _add_months(self.start, 1)
        while fee_month < self.now:
            txn = self.txn("stripe_fee", "usd", -500, 0, fee_month, None)
            object_id = txn.id
            self.writer.post(Op("post_movement", (txn, "stripe_fee"), {"object_id": object_id}))
            fee_month = _add_months(fee_month, 1)
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


__all__ = [
    "EMAIL_DOMAIN",
    "Draft",
    "Op",
    "SeedResult",
    "apply_exact",
    "draft_entry",
    "processing_fee",
    "seed_database",
]
