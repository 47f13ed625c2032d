"""The finance area's benchmark (issue 4, "Speed"): seed a PostgreSQL database
with `donations dev seed` (or reuse one seeded with the same N), then time the
real app, logged in as finance staff, and print target, measured and verdict.

    python bench/run.py [--payments N] [--runs R] [--export-runs R]

Writes bench-results/<stamp>-<N>.json and bench-results/latest.md. Never run
against a database you care about: it drops and recreates its own
(--database, default donations_bench) when the seeded N differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAFF_EMAIL = "bench.finance@example.org"
STAFF_PASSWORD = "bench-finance-passphrase-2026"  # noqa: S105 (a fake account in a throwaway database)
MARKER = "donations bench: payments={payments} seed={seed} months={months}"


@dataclass
class Result:
    name: str
    target: str
    unit: str
    median: float
    p95: float
    runs: int
    passed: bool
    detail: str = ""


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(0.95 * (len(ordered) - 1))))
    return ordered[index]


def database_url(admin_url: str, name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", admin_url)


def ensure_database(args: argparse.Namespace) -> tuple[str, float | None]:
    """The bench database, seeded with args.payments (see `ensure_ledger`)."""
    return ensure_ledger(
        args.admin_url,
        args.database,
        payments=args.payments,
        seed=args.seed,
        months=args.months,
        reseed=args.reseed,
    )


def ensure_ledger(
    admin_url: str,
    database: str,
    *,
    payments: int,
    seed: int = 1,
    months: int = 24,
    reseed: bool = False,
) -> tuple[str, float | None]:
    """A database seeded by `donations dev seed` with `payments`, `seed` and
    `months`; reused when its marker (a comment on the database) says it
    already is, else dropped, made and seeded again. bench/sync.py's report
    step seeds through here too, so one seeded ledger serves both when their
    sizes agree. Migrated to the head either way. Returns the URL and the
    seconds seeding took (None when reused)."""
    marker = MARKER.format(payments=payments, seed=seed, months=months)
    url = database_url(admin_url, database)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (database,),
        ).fetchone()
        reuse = row is not None and row[0] == marker and not reseed
        if reuse:
            print(f"reusing {database}: {marker}", flush=True)
        elif row is not None:
            print(f"dropping {database} (seeded differently)", flush=True)
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(database)))
        if not reuse:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "development"}
    env.pop("STRIPE_SECRET_KEY", None)
    donations = str(Path(sys.executable).parent / "donations")
    # a reused database gets the migrations merged since it was seeded
    subprocess.run([donations, "db", "upgrade"], env=env, check=True)  # noqa: S603 (our own CLI)
    if reuse:
        return url, None
    print(f"seeding {database} with {payments:,} payments", flush=True)
    started = time.monotonic()
    subprocess.run(  # noqa: S603 (our own CLI)
        [
            donations,
            "dev",
            "seed",
            "--payments",
            str(payments),
            "--seed",
            str(seed),
            "--months",
            str(months),
            "--batch",
            "10000",
        ],
        env=env,
        check=True,
    )
    seconds = time.monotonic() - started
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(database), sql.Literal(marker)
            )
        )
    return url, seconds


def make_app(url: str) -> Any:
    from app import create_app

    return create_app(
        {
            "APP_ENV": "development",
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-secret-key",
            "STRIPE_SECRET_KEY": "",
            "LEDGER_REPORTING_TZ": os.environ.get("LEDGER_REPORTING_TZ", "UTC"),
        }
    )


def ensure_staff(app: Any) -> None:
    from app.staff import create_staff, find_staff

    database = app.extensions["donations.db"]
    with database.session() as session:
        if find_staff(session, STAFF_EMAIL) is None:
            create_staff(
                session,
                email=STAFF_EMAIL,
                role="finance",
                password=STAFF_PASSWORD,
                hasher=app.extensions["donations.password_hasher"],
            )
            session.commit()


def logged_in_client(app: Any) -> Any:
    """A test client holding a finance staff session, logged in through the
    real form (CSRF token and all)."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise SystemExit("bench: no CSRF token on /login")
    answer = client.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "email": STAFF_EMAIL,
            "password": STAFF_PASSWORD,
            "next": "/ledger/",
        },
    )
    if answer.status_code != 303:
        raise SystemExit(f"bench: login answered {answer.status_code}")
    if client.get("/ledger/").status_code != 200:
        raise SystemExit("bench: the dashboard is not reachable after login")
    return client


def time_get(client: Any, path: str, runs: int) -> tuple[list[float], int]:
    client.get(path)  # warm-up: templates compiled, connections pooled, caches filled
    timings = []
    status = 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        response.get_data()
        timings.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return timings, status


def deep_journal_path(app: Any) -> str:
    """A journal page in the middle of the whole ledger (all time), reached
    by its keyset cursor as a 'next page' link would."""
    from sqlalchemy import func, select

    from app.finance.reports import Cursor
    from app.ledger import JournalEntry

    database = app.extensions["donations.db"]
    with database.session() as session:
        movements = select(JournalEntry).where(JournalEntry.kind != "settlement")
        count = session.scalar(select(func.count()).select_from(movements.subquery())) or 0
        middle = session.execute(
            select(JournalEntry.occurred_at, JournalEntry.key)
            .where(JournalEntry.kind != "settlement")
            .order_by(JournalEntry.occurred_at, JournalEntry.key)
            .offset(count // 2)
            .limit(1)
        ).one()
    cursor = Cursor(middle[0], middle[1]).encode()
    return f"/ledger/journal?since=&after={cursor}"


def search_term(app: Any) -> str:
    """A donor's email prefix as finance staff type it (first.last)."""
    from sqlalchemy import func, select

    from app.donors import Donor

    database = app.extensions["donations.db"]
    with database.session() as session:
        count = session.scalar(select(func.count(Donor.id))) or 1
        email = session.scalar(select(Donor.email).order_by(Donor.id).offset(count // 2).limit(1))
    return str(email).split("@")[0].rsplit(".", 1)[0]


_EXPORT_CHILD = r"""
import json, os, re, resource, sys, threading, time
import psycopg
sys.path.insert(0, sys.argv[2])
from bench.run import backend_cpu_watcher, ensure_staff, logged_in_client, make_app
app = make_app(sys.argv[1])
client = logged_in_client(app)
watch = backend_cpu_watcher(sys.argv[1])
own = os.times()
started = time.perf_counter()
response = client.get("/ledger/export.csv", buffered=False)
lines = 0
size = 0
for chunk in response.response:
    data = chunk if isinstance(chunk, bytes) else chunk.encode()
    lines += data.count(b"\n")
    size += len(data)
response.close()
seconds = time.perf_counter() - started
done = os.times()
print(json.dumps({"status": response.status_code, "rows": lines - 1, "bytes": size,
                  "seconds": seconds,
                  "cpu_s": done.user - own.user + done.system - own.system + watch(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def backend_cpu_watcher(url: str) -> Any:
    """Start sampling the CPU (from /proc) of the PostgreSQL backends that run a
    COPY on `url`'s database, and their parallel workers; the returned function
    stops and gives their CPU seconds. A worker's last sample is taken up to
    50 ms before it exits, so this slightly undercounts."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    seen: dict[int, list[float]] = {}
    stop = threading.Event()

    def cpu_of(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / tick

    def sample() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND (query LIKE 'COPY (%' OR leader_pid IN "
                    "(SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY (%'))"
                ).fetchall()
                for (pid,) in pids:
                    value = cpu_of(pid)
                    if value is not None:
                        seen.setdefault(pid, [value, value])[1] = value
                time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def finish() -> float:
        stop.set()
        thread.join()
        # A backend found after its start is counted from then; workers start
        # with the query, so their first sample is near their start.
        return sum(last - first for first, last in seen.values())

    return finish


def run_export(url: str) -> dict[str, Any]:
    """The full CSV export in a fresh process, so its RSS high-water mark is
    the export's own (the app's baseline included)."""
    output = subprocess.run(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", _EXPORT_CHILD, url, str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def measure(args: argparse.Namespace, url: str) -> list[Result]:
    app = make_app(url)
    ensure_staff(app)
    client = logged_in_client(app)
    results: list[Result] = []

    def timed(name: str, path: str, limit_ms: float, runs: int) -> None:
        timings, status = time_get(client, path, runs)
        median = statistics.median(timings)
        results.append(
            Result(
                name,
                f"< {limit_ms:g} ms",
                "ms",
                round(median, 1),
                round(_p95(timings), 1),
                runs,
                status == 200 and median < limit_ms,
                f"GET {path[:60]} -> {status}",
            )
        )
        print(f"  {name}: median {median:.1f} ms", flush=True)

    print("measuring (median and p95 of each)", flush=True)
    # The first view after a start counts every closed month's new donors;
    # later views reuse them until a payment dated in one arrives.
    app.extensions.pop("donations.first_gifts", None)
    started = time.perf_counter()
    first_status = client.get("/ledger/").status_code
    first_ms = (time.perf_counter() - started) * 1000
    results.append(
        Result(
            "dashboard, first view after a start",
            "- (kept months: next row)",
            "ms",
            round(first_ms, 1),
            round(first_ms, 1),
            1,
            first_status == 200,
            f"GET /ledger/ -> {first_status}, new donors of the closed months counted afresh",
        )
    )
    print(f"  dashboard, first view: {first_ms:.1f} ms", flush=True)
    timed("dashboard", "/ledger/", 300, args.runs)
    timed("journal, first page (this month)", "/ledger/journal", 100, args.runs)
    timed("journal, first page (all time)", "/ledger/journal?since=", 100, args.runs)
    timed("journal, deep page (all time)", deep_journal_path(app), 100, args.runs)
    term = search_term(app)
    timed("donor search (email prefix)", f"/ledger/donors?q={term}", 50, args.runs)
    timed("donor search (name part)", "/ledger/donors?q=kowalski", 50, args.runs)
    # Nothing matches: the whole table is searched (the worst case).
    timed("donor search (no match)", "/ledger/donors?q=nobody-by-this-name", 50, args.runs)
    app.extensions["donations.db"].dispose()

    exports = []
    for index in range(args.export_runs):
        found = run_export(url)
        if found["status"] != 200:
            raise SystemExit(f"bench: export answered {found['status']}")
        exports.append(found)
        rate = found["rows"] / found["seconds"]
        print(
            f"  export {index + 1}/{args.export_runs}: {found['rows']:,} rows in "
            f"{found['seconds']:.1f} s ({rate:,.0f} rows/s), CPU {found['cpu_s']:.1f} s, "
            f"peak RSS {found['peak_rss_mb']:.0f} MB, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if not exports:
        return results
    rates = [e["rows"] / e["seconds"] for e in exports]
    per_row = [e["cpu_s"] / e["rows"] * 1e6 for e in exports]
    peaks = [e["peak_rss_mb"] for e in exports]
    rows = exports[0]["rows"]
    results.append(
        Result(
            "CSV export, rows per second",
            ">= 100,000 rows/s",
            "rows/s",
            round(statistics.median(rates)),
            round(sorted(rates)[max(0, round(0.05 * (len(rates) - 1)))]),  # the slow end
            len(rates),
            statistics.median(rates) >= 100_000,
            f"{rows:,} rows, {exports[0]['bytes'] / 1e6:,.0f} MB",
        )
    )
    results.append(
        Result(
            "CSV export, CPU per row",
            "- (load-independent)",
            "us",
            round(statistics.median(per_row), 1),
            round(_p95(per_row), 1),
            len(per_row),
            True,
            "the exporting process + its PostgreSQL backend and parallel workers (/proc); "
            f"{round(1e6 / statistics.median(per_row)):,} rows per CPU-second",
        )
    )
    results.append(
        Result(
            "CSV export, peak memory (RSS)",
            "< 200 MB",
            "MB",
            round(statistics.median(peaks), 1),
            round(_p95(peaks), 1),
            len(peaks),
            max(peaks) < 200,
            "high-water mark of the exporting process",
        )
    )
    return results


def as_row(result: Result, payments: int) -> dict[str, Any]:
    """bench/all.py's shape: {name, value, unit, target, reference, met}."""
    return {
        "name": f"ledger at {payments:,} payments: {result.name}",
        "value": result.median,
        "unit": result.unit,
        "target": result.target,
        "reference": f"median of {result.runs}; p95 {result.p95:,} {result.unit}; {result.detail}",
        "met": result.passed,
    }


def table(results: list[Result]) -> str:
    head = f"| {'measure':<34} | {'target':<18} | {'median':>12} | {'p95':>12} | runs | pass |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in results:
        median = f"{r.median:,.1f} {r.unit}" if r.unit != "rows/s" else f"{r.median:,.0f}"
        p95 = f"{r.p95:,.1f} {r.unit}" if r.unit != "rows/s" else f"{r.p95:,.0f}"
        lines.append(
            f"| {r.name:<34} | {r.target:<18} | {median:>12} | {p95:>12} | {r.runs:>4} | "
            f"{'yes' if r.passed else 'NO':<4} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--payments", type=int, default=int(os.environ.get("BENCH_PAYMENTS", "100000"))
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "20")))
    parser.add_argument(
        "--export-runs", type=int, default=int(os.environ.get("BENCH_EXPORT_RUNS", "3"))
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE", "donations_bench"))
    parser.add_argument("--reseed", action="store_true", help="Seed again even if it matches.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--json", type=Path, help="also write rows for bench/all.py here")
    args = parser.parse_args(argv)

    url, seed_seconds = ensure_database(args)
    load_before = os.getloadavg()[0]
    results = measure(args, url)
    load_after = os.getloadavg()[0]
    report = table(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    header = (
        f"donations benchmark, {stamp}: {args.payments:,} seeded payments on PostgreSQL "
        f"({args.database}); seeding {'reused' if seed_seconds is None else f'took {seed_seconds:,.0f} s'}; "
        f"{os.cpu_count()} cores, load average {load_before:.1f} at the start, {load_after:.1f} at the end"
    )
    print()
    print(header)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "stamp": stamp,
        "payments": args.payments,
        "seed": args.seed,
        "months": args.months,
        "seed_seconds": seed_seconds,
        "cpus": os.cpu_count(),
        "load_average": [load_before, load_after],
        "bench_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": [asdict(r) for r in results],
    }
    (args.out / f"{stamp}-{args.payments}.json").write_text(json.dumps(payload, indent=2))
    (args.out / "latest.md").write_text(f"{header}\n\n{report}\n")
    if args.json:
        args.json.write_text(json.dumps([as_row(r, args.payments) for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
