"""The posting benchmark (issue 9, "A posting path fast enough for history"):
post N historical charges, each recognised and settled a day later (two
journal entries), through app.ledger's posting functions in one process on
PostgreSQL, one transaction per charge, and print movements (journal entries)
per second and whether the daily totals equal the journal afterwards; then
events per second through the real worker for a stored backlog of charge
events (bench/worker.py).

    python bench/posting.py [--charges N] [--runs R] [--worker-charges M]

Drops and recreates its own database (--database, default
donations_bench_posting) for every run: never point it at one you care about.
Loopback only; needs only the app itself.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.worker import WorkerRun, drain_backlog  # noqa: E402 (after the path is set)

TARGET = 500.0  # movements per second per process
# (currency, settled in, settled amount per 1000 of the charge's): one in
# eight converted yen, like the seed's.
CURRENCIES = (
    ("usd", "usd", 1000),
    ("eur", "eur", 1000),
    ("usd", "usd", 1000),
    ("gbp", "gbp", 1000),
    ("usd", "usd", 1000),
    ("eur", "eur", 1000),
    ("jpy", "jpy", 1000),
    ("jpy", "usd", 7),
)
HISTORY = datetime(2024, 12, 1, tzinfo=UTC)


@dataclass
class Run:
    charges: int
    entries: int
    seconds: float
    exact: bool

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def database_url(admin_url: str, name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", admin_url)


def fresh_database(admin_url: str, name: str) -> str:
    from app.migrate import upgrade

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(admin_url, name)
    upgrade(url)
    return url


def post_charges(url: str, charges: int, days: int, budget: float = 600.0) -> Run:
    """Recognise and settle `charges` charges spread over `days` days of
    history, one transaction per charge (stopping early after `budget`
    seconds, so a slow posting path cannot hold the benchmark for hours),
    then compare the totals."""
    from app import ledger
    from app.db import Database
    from app.ledger import BalanceTxn
    from app.ledger import totals as ledger_totals

    database = Database(url)
    try:
        started = time.perf_counter()
        entries = 0
        with database.session() as session:
            for n in range(charges):
                currency, settled_in, per_mille = CURRENCIES[n % len(CURRENCIES)]
                amount = 500 + (n * 7919) % 20000
                if currency == "jpy" and settled_in == "jpy":
                    amount //= 100
                moment = HISTORY + timedelta(seconds=(n * days * 86400) // charges)
                charge = f"ch_bench_{n}"
                entries += ledger.recognise_payment(
                    session,
                    charge_id=charge,
                    kind="donation" if n % 3 else "membership_payment",
                    currency=currency,
                    amount_minor=amount,
                    occurred_at=moment,
                    donor_id=None,
                )
                settled = amount * per_mille // 1000 if settled_in != currency else amount
                fee = settled * 29 // 1000 + 30
                entries += ledger.settle(
                    session,
                    BalanceTxn(
                        f"txn_bench_{n}",
                        "charge",
                        settled_in,
                        settled,
                        fee,
                        settled - fee,
                        moment + timedelta(days=2, hours=3),
                    ),
                    object_id=charge,
                    object_currency=currency,
                    object_amount_minor=amount,
                    charge_id=charge,
                    donor_id=None,
                )
                session.commit()
                if time.perf_counter() - started > budget:
                    charges = n + 1
                    break
        seconds = time.perf_counter() - started
        with database.session() as session:
            exact = ledger_totals.differences(session) == [] and ledger.verify(session) == []
        return Run(charges, entries, seconds, exact)
    finally:
        database.dispose()


def table(runs: list[Run], workers: list[WorkerRun]) -> str:
    rates = [r.rate for r in runs]
    median = statistics.median(rates)
    lines = [
        "| measure | target | median | runs (movements/s) | totals exact | pass |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| posting: {runs[0].charges:,} charges recognised and settled "
        f"({runs[0].entries:,} movements), a transaction per charge "
        f"| >= {TARGET:,.0f} movements/s | {median:,.0f} movements/s "
        f"| {', '.join(f'{r:,.0f}' for r in rates)} "
        f"| {'yes' if all(r.exact for r in runs) else 'NO'} "
        f"| {'yes' if median >= TARGET and all(r.exact for r in runs) else 'NO'} |",
    ]
    if workers:
        events = [w.rate for w in workers]
        lines.append(
            f"| worker: drain a backlog of {workers[0].events:,} charge events "
            f"(charge.succeeded, charge.updated) | - | {statistics.median(events):,.0f} events/s "
            f"| {', '.join(f'{r:,.0f}' for r in events)} "
            f"| {'yes' if all(w.exact for w in workers) else 'NO'} | - |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--charges", type=int, default=int(os.environ.get("BENCH_CHARGES", "20000"))
    )
    parser.add_argument("--days", type=int, default=730, help="Days of history they span.")
    parser.add_argument(
        "--budget", type=float, default=600.0, help="Seconds a run may post for (then it stops)."
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_POSTING_RUNS", "3")))
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--database", default=os.environ.get("BENCH_POSTING_DATABASE", "donations_bench_posting")
    )
    parser.add_argument(
        "--worker-charges",
        type=int,
        default=int(os.environ.get("BENCH_WORKER_CHARGES", "500")),
        help="Charges (two events each) in the worker's backlog; 0: skip it.",
    )
    args = parser.parse_args(argv)

    runs = []
    for number in range(1, args.runs + 1):
        url = fresh_database(args.admin_url, args.database)
        run = post_charges(url, args.charges, args.days, args.budget)
        print(
            f"run {number}: {run.charges:,} charges, {run.entries:,} movements in {run.seconds:,.1f} s, "
            f"{run.rate:,.0f}/s, totals {'exact' if run.exact else 'WRONG'}",
            flush=True,
        )
        runs.append(run)
    workers = []
    for number in range(1, args.runs + 1 if args.worker_charges else 1):
        url = fresh_database(args.admin_url, args.database)
        worker = drain_backlog(url, args.worker_charges, args.days)
        print(
            f"worker run {number}: {worker.processed:,} of {worker.events:,} events in "
            f"{worker.seconds:,.1f} s, {worker.rate:,.0f}/s, "
            f"totals {'exact' if worker.exact else 'WRONG'}",
            flush=True,
        )
        workers.append(worker)
    print()
    print(table(runs, workers))
    return (
        0 if statistics.median(r.rate for r in runs) >= TARGET and all(r.exact for r in runs) else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
