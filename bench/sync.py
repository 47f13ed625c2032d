"""`donations stripe sync` at scale (issue 9, "Speed"), against a local stub of
Stripe's list API on loopback that answers at once (keep-alive, its own
process, so its CPU and memory are not counted):

- report: `sync --report-only` over every balance transaction of a seeded
  ledger (--ledger-database, default bench/run.py's `donations_bench`, seeded
  with --payments and reused by run.py's rule: one seed serves both), served as
  Stripe would list them, so the report should find no difference; wall
  time, peak RSS and list calls per 100 transactions;
- posting: `sync` of --posting historical charges, each listed with its
  balance transaction expanded, into an empty ledger (a fresh database);
  charges posted per second, the posting's CPU per charge (the syncing
  process and its PostgreSQL backends, from /proc) and statements per page
  (counted on the engine), Stripe calls per charge, and `ledger verify`.

    python bench/sync.py [--ledger-database donations_bench] [--payments 1000000]
                         [--posting 100000] [--only report|posting] [--json PATH]

Prints a table; `--json PATH` writes its rows (name, value, unit, target,
reference, met). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PAGE = 100
T0 = 1_700_000_000  # 2023-11-14: history from before the service existed

# The last session's figures, for the `reference` column.
REFERENCE = {
    "report_seconds_1m": "21.1 s at 105,584 (about 200 s at 1M), 2026-12-01",
    "report_rss": "106 MB at 105,584, 2026-12-01",
    "posting": "330/s at 100,000 one charge at a time (make bench, 2026-12-01 16:49)",
}


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str
    reference: str
    met: bool | None


def database_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", ADMIN_URL)


def donations(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "donations"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603


def app_env(url: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "development"}
    env.pop("STRIPE_SECRET_KEY", None)
    return env


def create_database(name: str, *, drop: bool) -> bool:
    """True when it was made now (empty, migrated)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not drop:
            # a reused database gets the migrations merged since it was seeded
            migrated = donations(app_env(database_url(name)), "db", "upgrade")
            if migrated.returncode:
                raise SystemExit(migrated.stderr)
            return False
        if exists:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrated = donations(app_env(database_url(name)), "db", "upgrade")
    if migrated.returncode:
        raise SystemExit(migrated.stderr)
    return True


def ensure_seeded(name: str, payments: int) -> None:
    """The report's ledger: seeded and reused by bench/run.py's rule (a
    marker comment naming payments, seed and months), so with the same size
    the finance benchmark's database (`donations_bench`) serves both."""
    from bench.run import ensure_ledger

    _url, seconds = ensure_ledger(ADMIN_URL, name, payments=payments)
    if seconds is not None:
        print(f"seeded {name} with {payments:,} payments in {seconds:,.0f} s", flush=True)


# -- the stub -------------------------------------------------------------------

TYPES = {
    "settlement": "charge",
    "refund_failure": "refund_failure",
    "dispute": "adjustment",
    "dispute_reversal": "adjustment",
    "payout": "payout",
    "payout_failure": "payout_failure",
    "stripe_fee": "stripe_fee",
    "adjustment": "adjustment",
}


def ledger_transactions(url: str) -> list[dict[str, Any]]:
    """The ledger's balance transactions, newest first, as Stripe lists them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT stripe_balance_transaction_id, kind, stripe_object_id, currency,
                   amount_minor, fee_minor, net_minor,
                   CAST(EXTRACT(EPOCH FROM occurred_at) AS BIGINT)
            FROM journal_entries
            WHERE stripe_balance_transaction_id IS NOT NULL
            ORDER BY occurred_at DESC, stripe_balance_transaction_id DESC
            """
        )
        found = []
        for txn_id, kind, source, currency, amount, fee, net, created in rows:
            is_refund = kind == "settlement" and str(source).startswith("re_")
            category = "dispute" if kind == "dispute" else None
            found.append(
                {
                    "id": txn_id,
                    "object": "balance_transaction",
                    "amount": amount,
                    "fee": fee or 0,
                    "net": net if net is not None else amount,
                    "currency": currency,
                    "created": created,
                    "source": source,
                    "status": "available",
                    "type": "refund" if is_refund else TYPES.get(kind, "adjustment"),
                    "reporting_category": category or ("refund" if is_refund else TYPES.get(kind)),
                }
            )
        return found


def historical_charges(count: int) -> dict[str, list[dict[str, Any]]]:
    """`count` one-time gifts from before the service, newest first, each
    with its balance transaction (expanded on the charge, and listed)."""
    from tests import event_factory as ef

    charges, txns = [], []
    for n in range(count):
        created = T0 + n * 60
        amount = 500 + (n % 40) * 250
        txn = ef.balance_transaction(
            f"txn_h{n:07d}",
            amount=amount,
            fee=ef.fee_for(amount),
            source=f"ch_h{n:07d}",
            created=created,
        )
        charge = ef.charge(
            f"ch_h{n:07d}",
            amount=amount,
            created=created,
            payment_intent=f"pi_h{n:07d}",
            customer=f"cus_h{n % 5000:05d}",
            email=f"donor{n % 5000}@example.org",
            name="Past Donor",
            balance_transaction=txn,
            metadata={"frequency": "once"},
        )
        charges.append(charge)
        txns.append(txn)
    return {"charges": charges[::-1], "balance_transactions": txns[::-1]}


def serve(source: str, argument: str, port_file: str) -> None:
    """GET /v1/<list> pages (by `starting_after` and `limit`), GET /v1/<list>/<id>
    retrieves; every other list is empty. Counts calls by path."""
    lists = (
        {"balance_transactions": ledger_transactions(argument)}
        if source == "ledger"
        else historical_charges(int(argument))
    )
    position = {name: {o["id"]: i for i, o in enumerate(objs)} for name, objs in lists.items()}
    by_id = {o["id"]: o for objs in lists.values() for o in objs}
    calls: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as api.stripe.com
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return

        def answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            parts = parsed.path.removeprefix("/v1/").split("/")
            if parsed.path == "/_calls":
                return self.answer(200, dict(calls))
            calls["/v1/" + parts[0] + ("/{id}" if len(parts) > 1 else "")] += 1
            if len(parts) > 1:
                found = by_id.get(parts[1])
                if found is None:
                    return self.answer(404, {"error": {"type": "invalid_request_error"}})
                return self.answer(200, found)
            objects = lists.get(parts[0], [])
            if "payout" in query or "charge" in query or "payment[payment_intent]" in query:
                objects = []
            start = position.get(parts[0], {}).get(query.get("starting_after", ""), -1) + 1
            limit = int(query.get("limit", "10"))
            chunk = objects[start : start + limit]
            self.answer(
                200, {"object": "list", "data": chunk, "has_more": start + limit < len(objects)}
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    count = len(lists.get("balance_transactions", []))
    Path(port_file).write_text(f"{server.server_port} {count}")
    server.serve_forever()


def start_stub(source: str, argument: str) -> tuple[subprocess.Popen[bytes], str, int]:
    port_file = ROOT / "bench-results" / f"sync-stub-{source}.port"
    port_file.parent.mkdir(exist_ok=True)
    port_file.unlink(missing_ok=True)
    stub = subprocess.Popen(  # noqa: S603 (ourselves)
        [sys.executable, __file__, "--serve", source, argument, str(port_file)]
    )
    while not port_file.exists() or not port_file.read_text().strip():
        time.sleep(0.2)
        if stub.poll() is not None:
            raise SystemExit("the stub did not start")
    port, count = port_file.read_text().split()
    return stub, f"http://127.0.0.1:{port}", int(count)


RUN = """
import json, os, resource, sys, time
import psycopg
from sqlalchemy import event
from app import create_app
from app.reconcile.schedule import perform
from app.reconcile.sync import Window
app = create_app({"DATABASE_URL": sys.argv[1], "STRIPE_SECRET_KEY": "sk_test_bench",
                  "STRIPE_API_BASE": sys.argv[2], "STRIPE_SYNC_REQUESTS_PER_SECOND": 0,
                  "STRIPE_WEBHOOK_SECRET": "whsec_bench", "SECRET_KEY": "bench-" * 8,
                  "APP_ENV": "development"})
statements = [0]
@event.listens_for(app.extensions["donations.db"].engine, "before_cursor_execute")
def count(*args):
    statements[0] += 1
# The PostgreSQL backends' CPU (this database's, from /proc: same machine), read
# at each page's progress; the backends are listed again when the list changes.
monitor = psycopg.connect(sys.argv[1].replace("postgresql+psycopg://", "postgresql://"),
                          autocommit=True)
backends, last = [], [None]
def backend_cpu():
    total = 0
    for pid in backends:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
# Per list, at its last page: seconds, this process's CPU, the backends' CPU, statements.
marks = {}
def progress(resource_name, count):
    if resource_name != last[0]:
        last[0] = resource_name
        backends[:] = [r[0] for r in monitor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
    marks[resource_name] = (time.perf_counter() - started,
                            sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
                            backend_cpu(), statements[0])
started = time.perf_counter()
with app.app_context():
    outcome = perform(app.extensions["donations.db"], app.extensions["donations.payments"],
                      app.extensions["donations.webhooks"], Window(None, None),
                      report_only=sys.argv[3] == "report", config=app.config, progress=progress)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "calls": outcome.calls,
                  "lists": {k: v[0] for k, v in marks.items()}, "marks": marks,
                  "posted": outcome.run.posted, "differences": outcome.report.differences,
                  "listed": outcome.report.listed, "statements": statements[0],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
"""


def run_sync(url: str, base: str, mode: str) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", RUN, url, base, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def stub_calls(base: str) -> dict[str, int]:
    import requests

    found: dict[str, int] = requests.get(f"{base}/_calls", timeout=10).json()
    return found


def measure_report(args: argparse.Namespace) -> list[Row]:
    ensure_seeded(args.ledger_database, args.payments)
    stub, base, count = start_stub("ledger", database_url(args.ledger_database))
    try:
        result = run_sync(database_url(args.ledger_database), base, "report")
    finally:
        stub.terminate()
    per_100 = result["calls"] / (count / PAGE) if count else 0.0
    at_1m = result["seconds"] * 1_000_000 / count if count else 0.0
    return [
        Row(
            f"sync --report-only over {count:,} balance transactions",
            round(result["seconds"], 1),
            "s",
            "< 60 s at 1M",
            REFERENCE["report_seconds_1m"],
            result["seconds"] < 60 if count >= 1_000_000 else at_1m < 60,
        ),
        Row(
            "  its rate",
            round(count / result["seconds"]),
            "txns/s",
            "> 16,667/s",
            "5,004/s",
            count / result["seconds"] > 1_000_000 / 60,
        ),
        Row(
            "  its CPU per 1,000 transactions (the syncing process; PostgreSQL's not counted)",
            round(result["cpu_s"] * 1_000_000 / count, 1) if count else 0.0,
            "ms",
            "",
            f"{result['cpu_s']:.1f} s of CPU in {result['seconds']:.1f} s",
            None,
        ),
        Row(
            "  its peak RSS",
            round(result["rss_mb"]),
            "MB",
            "< 300 MB",
            REFERENCE["report_rss"],
            result["rss_mb"] < 300,
        ),
        Row(
            "  Stripe list calls per 100 transactions",
            round(per_100, 3),
            "calls",
            "1",
            "1.00",
            per_100 <= 1.01,
        ),
        Row(
            "  differences found (a matching ledger)",
            result["differences"],
            "",
            "0",
            "0",
            result["differences"] == 0,
        ),
    ]


@contextmanager
def autoanalyze(url: str, every: float = 60.0) -> Iterator[None]:
    """While the ledger grows from empty, ANALYZE it every minute as
    autovacuum's autoanalyze would (its default naptime; production keeps it
    on, README) when this server has it off, as this machine's has. Planned
    without statistics, the posting statement's read of the page's objects
    in the journal became a sequential scan: at 100,000 charges the run fell
    to 190/s, with 4.8 ms of PostgreSQL CPU per charge against 0.3 (465
    scans over 10 million rows by the 22,700th charge; 2026-12-01 19:50).
    The page's statements are now planned by index without statistics too
    (`totals.page_changes`); BENCH_SYNC_AUTOANALYZE=0 measures that case."""
    with psycopg.connect(url, autocommit=True) as conn:
        on = conn.execute("SHOW autovacuum").fetchone()
    if (on and on[0] == "on") or os.environ.get("BENCH_SYNC_AUTOANALYZE", "1") == "0":
        yield
        return
    stop = threading.Event()

    def analyze() -> None:
        while not stop.wait(every):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")

    thread = threading.Thread(target=analyze, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def measure_posting(args: argparse.Namespace) -> list[Row]:
    name = f"{args.database}_post"
    create_database(name, drop=True)
    stub, base, _count = start_stub("history", str(args.posting))
    try:
        with autoanalyze(database_url(name)):
            result = run_sync(database_url(name), base, "post")
        calls = stub_calls(base)
    finally:
        stub.terminate()
    # Statistics for the new rows first, as autovacuum would have them (it is
    # off on some machines): planned without them, verify's read of 200,000
    # entries ran for over 8 minutes (2026-12-01).
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        conn.execute("ANALYZE")
    verified = donations(app_env(database_url(name)), "ledger", "verify")
    # The charges' posting: from the last page of the list before them to
    # their own last page (seconds, this process's CPU, its PostgreSQL
    # backends' CPU, statements sent).
    marks = result["marks"]
    end = marks.get("charges", [result["seconds"], result["cpu_s"], 0.0, result["statements"]])
    start = max(
        (v for k, v in marks.items() if k != "charges" and v[0] <= end[0]),
        default=[0.0, 0.0, 0.0, 0],
        key=lambda v: v[0],
    )
    posting_seconds, own_cpu, pg_cpu, statements = (b - a for a, b in zip(start, end, strict=True))
    rate = args.posting / posting_seconds if posting_seconds else 0.0
    lookups = sum(v for k, v in calls.items() if "{id}" in k or "?" in k)
    print(f"stub calls: {calls}", flush=True)
    return [
        Row(
            f"sync posting {args.posting:,} historical charges (empty ledger)",
            round(rate),
            "charges/s",
            ">= 500/s",
            REFERENCE["posting"],
            rate >= 500,
        ),
        Row(
            "  CPU per charge, the syncing process + its PostgreSQL backends (load-independent)",
            round((own_cpu + pg_cpu) * 1000 / args.posting, 3),
            "ms",
            "",
            f"sync {own_cpu * 1000 / args.posting:.3f} ms + PostgreSQL "
            f"{pg_cpu * 1000 / args.posting:.3f} ms",
            None,
        ),
        Row(
            "  statements per page of 100 charges (round trips, commits excluded)",
            round(statements * PAGE / args.posting, 1),
            "statements",
            "",
            f"{statements / args.posting:.2f} per charge",
            None,
        ),
        Row("  whole run (lists, report, payouts)", round(result["seconds"], 1), "s", "", "", None),
        Row(
            "  Stripe calls per charge",
            round(sum(calls.values()) / args.posting, 3),
            "calls",
            "",
            "",
            None,
        ),
        Row(
            "  retrieves per charge",
            round(lookups / args.posting, 3),
            "calls",
            "0",
            "",
            lookups == 0,
        ),
        Row(
            "  ledger verify afterwards",
            verified.returncode,
            "exit",
            "0",
            "",
            verified.returncode == 0,
        ),
        Row(
            "  differences after the sync",
            result["differences"],
            "",
            "0",
            "",
            result["differences"] == 0,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database",
        default="donations_bench_sync",
        help="The posting step's database is this name + _post (made afresh).",
    )
    parser.add_argument(
        "--ledger-database",
        default=os.environ.get("BENCH_DATABASE", "donations_bench"),
        help="The report's seeded ledger: bench/run.py's (same seeding and reuse rule).",
    )
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--posting", type=int, default=100_000)
    parser.add_argument("--only", choices=("report", "posting"))
    parser.add_argument("--json", type=Path, help="Write the rows here as JSON.")
    args = parser.parse_args()
    load = os.getloadavg()
    rows: list[Row] = []
    if args.only in (None, "report"):
        rows += measure_report(args)
    if args.only in (None, "posting"):
        rows += measure_posting(args)
    print(
        f"stripe sync benchmark, load average {load[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores"
    )
    print("| measure | value | target | met |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print(f"| {row.name} | {row.value:,} {row.unit} | {row.target} | {met} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        threading.current_thread().name = "stub"
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(main())
