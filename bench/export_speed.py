"""Speed of the full ledger CSV export through the real CLI.

Runs `donations ledger export -o /dev/null` in a fresh subprocess (once per
run) against an already seeded PostgreSQL database, counts the rows the same
query exports (read-only), and prints rows per second (wall clock of the
subprocess) and the subprocess's peak RSS (getrusage RUSAGE_CHILDREN). The
issue's target: >= 100,000 rows/s and < 200 MB.

    .venv/bin/python bench/export_speed.py \
        --url postgresql://postgres@127.0.0.1:5432/donations_bench_1m --runs 3

Read only: it never writes to the database.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import ledger  # noqa: E402 (after the path is set)
from app.db import normalise_url  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/donations_bench_1m"


def count_rows(url: str) -> int:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            rows = ledger.rows_query(records=False).subquery()
            return int(connection.execute(select(func.count()).select_from(rows)).scalar_one())
    finally:
        engine.dispose()


def run_once(url: str, output: str) -> tuple[float, float]:
    """Seconds and the peak RSS in MB of one `donations ledger export`. Each
    run is a fresh child; RUSAGE_CHILDREN's maxrss is the largest child so
    far, so runs are measured in a fresh interpreter each (see main)."""
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-secret-key",
        "STRIPE_SECRET_KEY": "",
    }
    donations = str(Path(sys.executable).with_name("donations"))
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 (our own CLI)
        [donations, "ledger", "export", "-o", output], env=env, check=True, cwd=ROOT
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("BENCH_EXPORT_URL", DEFAULT_URL))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=os.devnull, help="where the CSV goes")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        # One run in this (fresh) process: its children are only this export.
        seconds, peak_mb = run_once(args.url, args.output)
        print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))
        return
    rows = count_rows(args.url)
    results = []
    for _ in range(args.runs):
        done = subprocess.run(  # noqa: S603 (this interpreter, this script)
            [sys.executable, __file__, "--one", "--url", args.url, "--output", args.output],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(done.stdout))
    rates = [rows / r["seconds"] for r in results]
    peaks = [r["peak_rss_mb"] for r in results]
    print(f"rows exported:   {rows:,}")
    for number, (rate, r) in enumerate(zip(rates, results, strict=True), start=1):
        print(
            f"run {number}: {r['seconds']:.2f} s, {rate:,.0f} rows/s, "
            f"peak RSS {r['peak_rss_mb']:.1f} MB"
        )
    print(
        f"median: {statistics.median(rates):,.0f} rows/s (target >= 100,000); "
        f"max peak RSS {max(peaks):.1f} MB (target < 200 MB)"
    )


if __name__ == "__main__":
    main()
