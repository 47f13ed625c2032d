"""`donations stripe sync --report-only` at scale (issue 9, "Speed"): a local
stub of Stripe's list API on loopback serves, as balance transactions, every
balance transaction the bench ledger holds (so the report should find no
difference), answering at once; the report runs in a fresh process, and the
table gives its wall time, Stripe calls per 100 transactions and peak RSS.

    python bench/sync.py [--database donations_bench] [--runs 3]

Needs a seeded bench database (`make bench` seeds `donations_bench`). The stub
runs in a process of its own, so its memory is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PAGE = 100


def database_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", ADMIN_URL)


def load_transactions(url: str) -> list[tuple[Any, ...]]:
    """The ledger's balance transactions, newest first, as Stripe lists them."""
    with psycopg.connect(url) as conn:
        return list(
            conn.execute(
                """
                SELECT stripe_balance_transaction_id, kind, stripe_object_id, currency,
                       amount_minor, fee_minor, net_minor,
                       CAST(EXTRACT(EPOCH FROM occurred_at) AS BIGINT)
                FROM journal_entries
                WHERE stripe_balance_transaction_id IS NOT NULL
                ORDER BY occurred_at DESC, stripe_balance_transaction_id DESC
                """
            )
        )


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


def serve(url: str, port_file: str) -> None:
    """The stub: GET /v1/balance_transactions pages; every other list is empty."""
    rows = load_transactions(url)
    position = {row[0]: i for i, row in enumerate(rows)}

    def as_json(row: tuple[Any, ...]) -> dict[str, Any]:
        txn_id, kind, source, currency, amount, fee, net, created = row
        is_refund = kind == "settlement" and str(source).startswith("re_")
        category = "dispute" if kind == "dispute" else None
        return {
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

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            data: list[dict[str, Any]] = []
            has_more = False
            if parsed.path == "/v1/balance_transactions" and "payout" not in query:
                start = position.get(query.get("starting_after", ""), -1) + 1
                limit = int(query.get("limit", "10"))
                chunk = rows[start : start + limit]
                data = [as_json(row) for row in chunk]
                has_more = start + limit < len(rows)
            body = json.dumps({"object": "list", "data": data, "has_more": has_more}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(f"{server.server_port} {len(rows)}")
    server.serve_forever()


RUN = """
import json, resource, sys, time
from app import create_app
from app.reconcile.schedule import perform
from app.reconcile.sync import Window
app = create_app({"DATABASE_URL": sys.argv[1], "STRIPE_SECRET_KEY": "sk_test_bench",
                  "STRIPE_API_BASE": sys.argv[2], "STRIPE_SYNC_REQUESTS_PER_SECOND": 0,
                  "STRIPE_WEBHOOK_SECRET": "whsec_bench", "SECRET_KEY": "bench-" * 8})
started = time.perf_counter()
with app.app_context():
    outcome = perform(app.extensions["donations.db"], app.extensions["donations.payments"],
                      app.extensions["donations.webhooks"],
                      Window(None, None), report_only=True, config=app.config)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "calls": outcome.calls,
                  "differences": outcome.report.differences,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="donations_bench")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = database_url(args.database)
    port_file = ROOT / "bench-results" / "sync-stub.port"
    port_file.parent.mkdir(exist_ok=True)
    port_file.unlink(missing_ok=True)
    stub = subprocess.Popen([sys.executable, __file__, "--serve", url, str(port_file)])  # noqa: S603 (ourselves)
    try:
        while not port_file.exists():
            time.sleep(0.2)
            if stub.poll() is not None:
                raise SystemExit("the stub did not start")
        time.sleep(0.2)
        port, count = port_file.read_text().split()
        results = []
        for _ in range(args.runs):
            out = subprocess.run(  # noqa: S603 (our own interpreter)
                [sys.executable, "-c", RUN, url, f"http://127.0.0.1:{port}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        stub.terminate()
    seconds = statistics.median(r["seconds"] for r in results)
    rss = max(r["rss_mb"] for r in results)
    calls = results[0]["calls"]
    per_100 = calls / (int(count) / PAGE) if int(count) else 0
    print(f"| measure | target | median of {args.runs} |")
    print("| --- | --- | --- |")
    print(
        f"| sync --report-only over {int(count):,} balance transactions | < 60 s at 1M | {seconds:.1f} s ({int(count) / seconds:,.0f} txns/s) |"
    )
    print(f"| its peak RSS | < 300 MB | {rss:.0f} MB |")
    print(f"| Stripe list calls per 100 transactions | 1 | {per_100:.2f} ({calls} calls) |")
    print(f"| differences found (a matching ledger) | 0 | {results[0]['differences']} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        threading.current_thread().name = "stub"
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
