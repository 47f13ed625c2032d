"""The posting benchmark (issue 9, "A posting path fast enough for history"):
post N historical charges, each recognised and settled two days later (two
journal entries), through app.ledger's posting functions in one process on
PostgreSQL, one transaction per charge; then roll the daily totals up
(app.ledger.rollup) and check that they equal the journal (`ledger
verify`). Prints movements (journal entries) per second, the roll-up's
changes per second and round trips per movement, each the median of --runs
runs on a fresh database (--database, default donations_bench_posting,
dropped and made again per run: never point it at one you care about).
`--json PATH` writes the rows for `make bench`. The worker's figures are
bench/worker.py's.

    python bench/posting.py [--charges N] [--runs R] [--json PATH]

Loopback only; needs only the app itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rows import Row, backend_cpu_seconds, fresh_database, print_table, write_json  # noqa: E402 (path set)

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
    rollup_seconds: float = 0.0
    changes: int = 0
    statements: int = 0
    client_cpu: float = 0.0  # seconds
    server_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def post_charges(url: str, charges: int, days: int, budget: float = 600.0) -> Run:
    """Recognise and settle `charges` charges spread over `days` days of
    history, one transaction per charge (stopping early after `budget`
    seconds, so a slow posting path cannot hold the benchmark for hours),
    then compare the totals."""
    from app import ledger
    from app.db import Database
    from app.ledger import BalanceTxn
    from app.ledger import totals as ledger_totals
    from app.ledger.rollup import open_changes, roll_up

    database = Database(url)
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        entries = 0
        with database.session() as session:
            pid = int(session.scalar(text("SELECT pg_backend_pid()")) or 0)
            session.commit()
            statements[0] = 0
            server = backend_cpu_seconds(pid)
            client = time.process_time()
            started = time.perf_counter()
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
            client_cpu = time.process_time() - client
            server_cpu = backend_cpu_seconds(pid) - server
        posted_statements = statements[0]
        event.remove(database.engine, "before_cursor_execute", count)
        with database.engine.connect() as connection:  # as autovacuum would, before reading all
            connection.execute(text("ANALYZE"))
            connection.commit()
        with database.session() as session:
            changes = open_changes(session)
            rolled = time.perf_counter()
            while roll_up(session):
                session.commit()
            rollup_seconds = time.perf_counter() - rolled
            exact = (
                open_changes(session) == 0
                and ledger_totals.differences(session) == []
                and ledger.verify(session) == []
            )
        return Run(
            charges,
            entries,
            seconds,
            exact,
            rollup_seconds,
            changes,
            posted_statements,
            client_cpu,
            server_cpu,
        )
    finally:
        database.dispose()


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
    parser.add_argument("--json", dest="json_path", help="Write the rows as JSON to this file.")
    args = parser.parse_args(argv)

    runs = []
    for number in range(1, args.runs + 1):
        url = fresh_database(args.admin_url, args.database)
        run = post_charges(url, args.charges, args.days, args.budget)
        print(
            f"run {number}: {run.charges:,} charges, {run.entries:,} movements in "
            f"{run.seconds:,.1f} s, {run.rate:,.0f}/s; roll-up of {run.changes:,} changes in "
            f"{run.rollup_seconds:,.2f} s; {run.statements / run.entries:.2f} statements and "
            f"{run.client_cpu * 1000 / run.entries:.2f} + {run.server_cpu * 1000 / run.entries:.2f}"
            " ms CPU (client + server) "
            f"per movement; totals {'exact' if run.exact else 'WRONG'} "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        runs.append(run)
    exact = all(r.exact for r in runs)
    rows = [
        Row.of(
            f"posting: {runs[0].charges:,} charges recognised and settled "
            f"({runs[0].entries:,} movements), a transaction per charge",
            [r.rate for r in runs],
            "movements/s",
            target=TARGET,
            at_least=True,
            reference="82 movements/s on 1,000 charges before issue 9 (load ~4)",
            exact=exact,
        ),
        Row.of(
            "posting: CPU per movement, this process + its PostgreSQL backend (load-independent)",
            [(r.client_cpu + r.server_cpu) * 1000 / r.entries for r in runs],
            "ms",
            target=None,
            at_least=False,
            exact=exact,
        ),
        Row.of(
            "posting: statements per movement (round trips, commits excluded)",
            [r.statements / r.entries for r in runs],
            "statements",
            target=None,
            at_least=False,
            exact=exact,
        ),
        Row.of(
            "posting: roll-up of the daily totals' open changes",
            [r.changes / r.rollup_seconds for r in runs if r.rollup_seconds],
            "changes/s",
            target=None,
            at_least=True,
            exact=exact,
        ),
    ]
    print()
    print_table(rows)
    if args.json_path:
        write_json(args.json_path, rows)
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
