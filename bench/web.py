"""The web benchmarks (issue 12): the real app under gunicorn
(config/gunicorn.conf.py) on PostgreSQL, loaded by wrk on loopback, each
against a reference measured in the same run on the same gunicorn settings.

    python bench/web.py [--runs 3] [--seconds 8] [--json PATH]

- webhook ingest: signed events/s acknowledged, p50/p99, vs a bare Flask
  endpoint answering 200 (bench/bare.py);
- GET /donate: pages/s and p99 vs a bare render of the same HTML;
- checkout: our overhead per POST /donate with a stub Stripe on loopback
  that answers in 150 ms, and what a donor sees when Stripe answers 429.

Uses its own database (donations_bench_web, dropped and made afresh) and
never anything but 127.0.0.1. Needs wrk (Debian's package).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import requests
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.migrate import upgrade  # noqa: E402
from tests.stripe_helpers import stripe_object  # noqa: E402

WEBHOOK_SECRET = "whsec_bench_" + "0" * 24
STUB_LATENCY = 0.150
RESULT_MARK = "BENCHJSON "

# wrk's Lua: each thread sends its share of pre-signed events in turn and
# prints the summary as one JSON line at the end.
WEBHOOK_LUA = r"""
local events = {}
local index = 1
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  local threads = tonumber(os.getenv("BENCH_THREADS"))
  local n = 0
  local sig = nil
  for line in io.lines(os.getenv("BENCH_EVENTS")) do
    if sig == nil then
      sig = line
    else
      if n % threads == tid then
        table.insert(events, wrk.format("POST", "/webhooks/stripe",
          {["Content-Type"] = "application/json", ["Stripe-Signature"] = sig}, line))
      end
      n = n + 1
      sig = nil
    end
  end
end
function request()
  local r = events[index]
  index = index + 1
  if index > #events then index = 1 end
  return r
end
"""
DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def row(
    name: str, value: float, unit: str, target: str, reference: str, met: bool | None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "target": target,
        "reference": reference,
        "met": met,
        **extra,
    }


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = re.sub(r"/[^/]*$", f"/{name}", admin_url)
    upgrade(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) process `pid` has used; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(FileNotFoundError):
            found += [int(x) for x in task.read_text().split()]
    return found


@dataclass
class Server:
    """A gunicorn under test: its address, and the CPU its master and workers
    (and, with `database`, that database's PostgreSQL backends on this
    machine) have used, so a run's CPU per request can be taken (the rate
    depends on what else runs on the shared cores; the CPU per request much less)."""

    base: str
    pid: int
    admin_url: str | None = None
    database: str | None = None

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of the app and of its backends, and the database's session and transaction counts."""
        app = process_cpu_seconds(self.pid) + sum(
            process_cpu_seconds(child) for child in children_of(self.pid)
        )
        backends = 0.0
        if self.admin_url and self.database:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.database,),
                ).fetchall()
                counts = conn.execute(
                    "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = %s",
                    (self.database,),
                ).fetchone()
            backends = sum(process_cpu_seconds(int(pid)) for (pid,) in pids)
            # pg_stat_database's counters (sessions opened, transactions) lag
            # by up to the stats flush interval; over a run of seconds they are close.
            if counts:
                return {"app": app, "db": backends, "sessions": counts[0], "xacts": counts[1]}
        return {"app": app, "db": backends, "sessions": 0, "xacts": 0}


@contextmanager
def gunicorn(
    app_spec: str,
    env: dict[str, str],
    log: Path,
    *,
    chdir: Path = ROOT,
    admin_url: str | None = None,
    database: str | None = None,
) -> Iterator[Server]:
    port = free_port()
    full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
    full_env.pop("WEB_BIND", None)
    with log.open("ab") as out:
        server = subprocess.Popen(  # noqa: S603 (our own interpreter and config)
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "config" / "gunicorn.conf.py"),
                "--chdir",
                str(chdir),
                app_spec,
            ],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if requests.get(f"{base}/donate", timeout=10).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: {app_spec} did not start; see {log}")
                time.sleep(0.3)
            # Every worker warm (imports, pools): a burst wider than the workers.
            for _ in range(40):
                requests.get(f"{base}/donate", timeout=10)
            yield Server(base, server.pid, admin_url, database)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wrk(
    server: Server, path: str, seconds: float, connections: int, script: str, env: dict[str, str]
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + DONE_LUA)
        lua = f.name
    try:
        load_before = os.getloadavg()[0]
        cpu_before = server.cpu_seconds()
        out = subprocess.run(  # noqa: S603 (wrk, on loopback)
            [
                shutil.which("wrk") or "wrk",
                "-t",
                env.get("BENCH_THREADS", "1"),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                lua,
                f"{server.base}{path}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=seconds + 60,
        )
        cpu_after = server.cpu_seconds()
        if out.returncode != 0:
            raise SystemExit(f"bench: wrk failed: {out.stderr.strip()[:500]}")
        text = out.stdout
    finally:
        os.unlink(lua)
    line = next(x for x in text.splitlines() if x.startswith(RESULT_MARK))
    found: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARK))
    found["rate"] = found["requests"] / (found["duration_us"] / 1e6)
    found["load"] = round((load_before + os.getloadavg()[0]) / 2, 2)
    # The server's CPU per request (master and workers; PostgreSQL's backends
    # apart), in ms: wrk's own CPU and the other suites' are not in it.
    for part in ("app", "db"):
        found[f"cpu_{part}_ms"] = (
            1000 * (cpu_after[part] - cpu_before[part]) / max(1, found["requests"])
        )
    # New PostgreSQL connections and transactions per request (a pool too small
    # for the threads opens and closes connections: a backend's fork each).
    for part in ("sessions", "xacts"):
        found[f"{part}_per_request"] = (cpu_after[part] - cpu_before[part]) / max(
            1, found["requests"]
        )
    return found


def signed_events(path: Path, count: int) -> None:
    """`count` distinct charge.succeeded events (Stripe's own example charge,
    about the size of a real one), each as its signature line and body line."""
    charge = stripe_object("charge")
    now = int(time.time())
    with path.open("w") as out:
        for _ in range(count):
            tag = uuid.uuid4().hex
            charge["id"] = f"ch_{tag[:24]}"
            event = {
                "id": f"evt_{tag}",
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": now,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": "charge.succeeded",
                "data": {"object": charge},
            }
            body = json.dumps(event, separators=(",", ":"))
            mac = hmac.new(
                WEBHOOK_SECRET.encode(), f"{now}.{body}".encode(), hashlib.sha256
            ).hexdigest()
            out.write(f"t={now},v1={mac}\n{body}\n")


def stored_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT count(*) FROM stripe_events").fetchone()
    return int(found[0]) if found else 0


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def cpu_note(ours: dict[str, Any], bare: dict[str, Any]) -> str:
    return (
        f"CPU/request {ours['cpu_app_ms']:.2f} ms app + {ours['cpu_db_ms']:.2f} ms PostgreSQL"
        f" vs bare {bare['cpu_app_ms']:.2f} ms; per request {ours['xacts_per_request']:.2f}"
        f" transactions, {ours['sessions_per_request']:.3f} new connections"
    )


def cpu_row(name: str, ours: list[dict[str, Any]], bare: list[dict[str, Any]]) -> dict[str, Any]:
    """The server's CPU per request (gunicorn master and workers, plus the
    app's PostgreSQL backends), which the load changes much less than the rate."""
    app, db = median_of(ours, "cpu_app_ms"), median_of(ours, "cpu_db_ms")
    reference = median_of(bare, "cpu_app_ms")
    return row(
        name,
        round(app + db, 3),
        "ms CPU",
        "-",
        f"gunicorn and the app {app:.3f} ms + PostgreSQL {db:.3f} ms; bare {reference:.3f} ms"
        f" ({(app + db) / reference:.1f}x)",
        None,
        app_ms=[round(r["cpu_app_ms"], 3) for r in ours],
        db_ms=[round(r["cpu_db_ms"], 3) for r in ours],
        reference_ms=[round(r["cpu_app_ms"], 3) for r in bare],
    )


# -- the stub Stripe -------------------------------------------------------


class StubStripe:
    """Checkout Sessions on loopback, each answered after 150 ms; in `rate_limited`
    mode a 429 like Stripe's. Counts requests and sessions per idempotency key."""

    def __init__(self) -> None:
        self.rate_limited = False
        self.lock = threading.Lock()
        self.requests = 0
        self.server_seconds: list[float] = []
        self.sessions: dict[str, str] = {}  # idempotency key -> session id
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY the
            # body waits for the client's delayed ACK (40 ms), the stub's cost.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def parse_request(self) -> bool:
                # The request line has arrived: from here on it is the stub's
                # time (parsing the headers too), not ours.
                self.started = time.perf_counter()
                return super().parse_request()

            def do_POST(self) -> None:
                started = self.started
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
                time.sleep(STUB_LATENCY)
                with stub.lock:
                    stub.requests += 1
                    if stub.rate_limited:
                        status, body = (
                            429,
                            {
                                "error": {
                                    "type": "invalid_request_error",
                                    "code": "rate_limit",
                                    "message": "Too many requests hit the API too quickly.",
                                }
                            },
                        )
                    else:
                        session_id = stub.sessions.setdefault(key, f"cs_test_{uuid.uuid4().hex}")
                        status, body = (
                            200,
                            stripe_object(
                                "checkout.session",
                                id=session_id,
                                url=f"https://checkout.stripe.com/c/pay/{session_id}",
                                livemode=False,
                                expires_at=int(time.time()) + 86400,
                            ),
                        )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
                self.end_headers()
                self.wfile.write(data)
                with stub.lock:
                    stub.server_seconds.append(time.perf_counter() - started)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unbinding_limits() -> dict[str, str]:
    """The donor-form caps of config/default.toml with every window kept and
    its count raised to a million ("10 per minute;30 per hour" becomes
    "1000000 per minute;1000000 per hour"), as environment settings."""
    defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    return {
        name.upper(): re.sub(r"\d+(?= per\b)", "1000000", str(defaults[name]))
        for name in (
            "donor_form_limit_per_address",
            "donor_form_limit_per_email",
            "donor_form_limit_site",
        )
    }


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    if not match:
        raise SystemExit(f"bench: no {name} on /donate")
    return match.group(1)


def donation_form(client: requests.Session, base: str) -> dict[str, str]:
    html = client.get(f"{base}/donate", timeout=30).text
    return {
        "csrf_token": hidden(html, "csrf_token"),
        "nonce": hidden(html, "nonce"),
        "frequency": "once",
        "currency": "usd",
        "amount": "25",
        "email": "bench.reader@example.org",
        "name": "Bench Reader",
    }


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes have used, every thread counted, to the
    nanosecond (/proc/<pid>/task/<tid>/schedstat; /proc's stat counts in
    10 ms ticks, coarser than one request)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with suppress(OSError, ValueError, IndexError):  # a thread that ended meanwhile
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def server_processes(server: Server, url: str) -> tuple[list[int], list[int]]:
    """The gunicorn workers of `server` and the PostgreSQL backends connected
    to the bench's database."""
    workers = children_of(server.pid)
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return workers, [int(r[0]) for r in found]


def measure_checkout(
    server: Server, stub: StubStripe, url: str, count: int
) -> list[dict[str, Any]]:
    base = server.base
    client = requests.Session()
    overheads: list[float] = []
    totals: list[float] = []
    app_cpu: list[float] = []  # per POST, ms
    database_cpu: list[float] = []
    client_cpu: list[float] = []
    # The timed POST goes out on a kept-alive http.client connection, as a
    # browser's would: requests' own work (about 1 ms of CPU here) is not the
    # service's. The form and its cookie come from `client`.
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(data: dict[str, str]) -> tuple[float, float]:
        body = urlencode(data).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
        }
        before = len(stub.server_seconds)
        for attempt in (1, 2):
            started, client_started = time.perf_counter(), time.thread_time()
            try:
                connection.request("POST", "/donate", body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                break
            except (http.client.HTTPException, OSError):
                connection.close()  # the server closed a kept-alive connection: once more
                if attempt == 2:
                    raise
        total = time.perf_counter() - started
        client_seconds = time.thread_time() - client_started
        if answer.status != 303 or len(stub.server_seconds) != before + 1:
            raise SystemExit(f"bench: POST /donate answered {answer.status}")
        return total, client_seconds

    # Warm: each worker's connections to PostgreSQL and to the stub, psycopg's
    # prepared statements (after 5 uses of each), the code's first run.
    for _ in range(12):
        post(donation_form(client, base))
    workers, backends = server_processes(server, url)
    for _ in range(count):
        data = donation_form(client, base)
        app_before, database_before = cpu_seconds(workers), cpu_seconds(backends)
        total, client_seconds = post(data)
        app_cpu.append((cpu_seconds(workers) - app_before) * 1000)
        database_cpu.append((cpu_seconds(backends) - database_before) * 1000)
        client_cpu.append(client_seconds * 1000)
        totals.append(total * 1000)
        overheads.append((total - stub.server_seconds[-1]) * 1000)
    connection.close()
    overhead = statistics.median(overheads)
    # Medians, as for the overhead: a POST that met a worker's first
    # connection or a collection of the garbage would pull a mean up.
    app_ms, database_ms, client_ms = map(statistics.median, (app_cpu, database_cpu, client_cpu))
    cpu_ms = statistics.median(a + d for a, d in zip(app_cpu, database_cpu, strict=True))
    cpu_mean_ms = statistics.mean(a + d for a, d in zip(app_cpu, database_cpu, strict=True))
    rows = [
        row(
            "checkout: our overhead per POST /donate",
            round(overhead, 1),
            "ms",
            "< 5 ms",
            f"stub Stripe {STUB_LATENCY * 1000:.0f} ms; whole POST median "
            f"{statistics.median(totals):.1f} ms; of the overhead, CPU {cpu_ms:.1f} ms "
            f"(app {app_ms:.1f}, PostgreSQL {database_ms:.1f}) and the bench's client "
            f"{client_ms:.1f} ms, the rest waiting on loopback hops",
            overhead < 5,
            runs=count,
            p95=round(sorted(overheads)[int(0.95 * (len(overheads) - 1))], 1),
            cpu_ms=round(cpu_ms, 2),
            cpu_mean_ms=round(cpu_mean_ms, 2),
            app_cpu_ms=round(app_ms, 2),
            database_cpu_ms=round(database_ms, 2),
            client_cpu_ms=round(client_ms, 2),
            load=round(os.getloadavg()[0], 2),
        ),
        row(
            "checkout: CPU per POST /donate, gunicorn worker + its PostgreSQL backends "
            "(load-independent)",
            round(cpu_ms, 2),
            "ms",
            "-",
            f"medians of {count}: app {app_ms:.2f} ms, PostgreSQL {database_ms:.2f} ms; mean {cpu_mean_ms:.2f} ms",
            None,
        ),
    ]
    # Stripe answers 429: the donor gets the form back with a notice to retry;
    # once Stripe recovers, the same submission (and a double click) makes one
    # session, because the idempotency key is derived from the submission.
    stub.rate_limited = True
    data = donation_form(client, base)
    refused = client.post(f"{base}/donate", data=data, allow_redirects=False, timeout=30)
    stub.rate_limited = False
    keys_before = len(stub.sessions)
    again = client.post(f"{base}/donate", data=data, allow_redirects=False, timeout=30)
    twice = client.post(f"{base}/donate", data=data, allow_redirects=False, timeout=30)
    new_sessions = len(stub.sessions) - keys_before
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM checkouts WHERE stripe_checkout_session_id = %s",
            (again.headers.get("Location", "").rsplit("/", 1)[-1],),
        ).fetchone()
    rows_for_it = int(found[0]) if found else -1
    retry_page = refused.status_code == 503 and "form" in refused.text
    same = again.headers.get("Location") == twice.headers.get("Location")
    ok = retry_page and new_sessions == 1 and same and rows_for_it == 1
    rows.append(
        row(
            "checkout: Stripe 429",
            refused.status_code,
            "HTTP status",
            "a retry page; no duplicate session",
            f"retry page {'shown' if retry_page else 'NOT shown'}; after recovery the same "
            f"submission twice -> {again.status_code}/{twice.status_code}, "
            f"{new_sessions} session(s) at Stripe, {rows_for_it} checkout row(s)",
            ok,
        )
    )
    return rows


# -- the runs -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_WEB_RUNS", "3")))
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("BENCH_WEB_SECONDS", "8"))
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--checkouts", type=int, default=40)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--database", default="donations_bench_web")
    parser.add_argument("--only", choices=["webhook", "donate", "checkout"], action="append")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing (Debian: apt-get install wrk)")
    only = set(args.only or ["webhook", "donate", "checkout"])

    url = fresh_database(args.admin_url, args.database)
    work = Path(tempfile.mkdtemp(prefix="donations-bench-web-"))
    log = work / "gunicorn.log"
    workers = os.environ.get("WEB_WORKERS") or str(os.cpu_count() or 1)  # the config's default
    web_env = {
        "APP_ENV": "development",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-web-secret-key-of-a-decent-length",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEB_WORKERS": workers,
        "BENCH_DONATE_HTML": str(work / "donate.html"),
        # Rate limits counted in Redis, as production must (the app refuses to
        # start there without REDIS_URL): in memory they would cost less and
        # not be shared between the workers. A database of the bench's own.
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        # POST /donate's rate limits must not cap the bench, but they are
        # counted as production counts them: the defaults' windows, each a
        # round trip to Redis, with room for a million in each.
        **unbinding_limits(),
        # The app's log lines as production writes them (config/production.toml:
        # JSON at INFO, one per stored webhook), beside gunicorn's access log.
        "LOG_FORMAT": os.environ.get("BENCH_LOG_FORMAT", "json"),
        "LOG_LEVEL": "INFO",
    }
    rows: list[dict[str, Any]] = []
    settings = (
        f"gunicorn {os.environ.get('WEB_WORKER_CLASS', 'gthread')} x{workers}"
        f" (threads {os.environ.get('WEB_THREADS', '8')}), wrk 1 thread {args.connections} connections"
    )
    print(f"web benchmarks: {settings}, {args.runs} runs of {args.seconds:g} s", flush=True)
    try:
        # The app and the bare reference only for the suites that load them
        # (`--only checkout` starts its own app with the stub Stripe).
        if only & {"webhook", "donate"}:
            with gunicorn(
                "app:create_app()", web_env, log, admin_url=args.admin_url, database=args.database
            ) as app_server:
                page = requests.get(f"{app_server.base}/donate", timeout=10).text
                (work / "donate.html").write_text(page)
                with gunicorn(
                    "bare:create_app()", web_env, log, chdir=ROOT / "bench"
                ) as bare_server:
                    if "webhook" in only:
                        rows += bench_webhooks(args, app_server, bare_server, work, url, settings)
                    if "donate" in only:
                        rows += bench_donate(args, app_server, bare_server, settings)
        if "checkout" in only:
            stub = StubStripe()
            try:
                env = {
                    **web_env,
                    "STRIPE_SECRET_KEY": "sk_test_bench",
                    "STRIPE_API_BASE": stub.base,
                }
                with gunicorn("app:create_app()", env, log) as server:
                    rows += measure_checkout(server, stub, url, args.checkouts)
            finally:
                stub.close()
    finally:
        drop_database(args.admin_url, args.database)
    for r in rows:
        print(f"  {r['name']}: {r['value']} {r['unit']} (target {r['target']}; {r['reference']})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["met"] is not False for r in rows) else 1


def bench_webhooks(
    args: argparse.Namespace,
    app_server: Server,
    bare_server: Server,
    work: Path,
    url: str,
    settings: str,
) -> list[dict[str, Any]]:
    events = work / "events.txt"
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for number in range(args.runs):
        signed_events(events, int(args.seconds * 4000))
        env = {"BENCH_EVENTS": str(events), "BENCH_THREADS": "1"}
        before = stored_events(url)
        bare.append(
            wrk(bare_server, "/webhooks/stripe", args.seconds, args.connections, WEBHOOK_LUA, env)
        )
        ours.append(
            wrk(app_server, "/webhooks/stripe", args.seconds, args.connections, WEBHOOK_LUA, env)
        )
        ours[-1]["stored"] = stored_events(url) - before
        print(
            f"  webhook run {number + 1}: {ours[-1]['rate']:,.0f}/s (stored {ours[-1]['stored']:,},"
            f" non-2xx {ours[-1]['non2xx']}) vs bare {bare[-1]['rate']:,.0f}/s, load {ours[-1]['load']};"
            f" {cpu_note(ours[-1], bare[-1])}",
            flush=True,
        )
    rate, reference = median_of(ours, "rate"), median_of(bare, "rate")
    ratio = rate / reference
    failures = sum(r["non2xx"] + r["socket_errors"] for r in ours)
    return [
        row(
            "webhook ingest: signed events/s acknowledged",
            round(rate),
            "events/s",
            ">= 1,000/s and >= 0.5 x reference",
            f"bare Flask 200: {reference:,.0f}/s; ratio {ratio:.2f}",
            rate >= 1000 and ratio >= 0.5 and failures == 0,
            ratio=round(ratio, 3),
            runs=[round(r["rate"]) for r in ours],
            reference_runs=[round(r["rate"]) for r in bare],
            stored=[r["stored"] for r in ours],
            failures=failures,
            load=[r["load"] for r in ours],
            settings=settings,
        ),
        row(
            "webhook ingest: p50 / p99 latency",
            round(median_of(ours, "p50_us") / 1000, 1),
            "ms (p50)",
            "-",
            f"p99 {median_of(ours, 'p99_us') / 1000:.1f} ms; bare p50 "
            f"{median_of(bare, 'p50_us') / 1000:.1f} / p99 {median_of(bare, 'p99_us') / 1000:.1f} ms",
            None,
            p99_ms=round(median_of(ours, "p99_us") / 1000, 1),
        ),
        cpu_row("webhook ingest: CPU per event", ours, bare),
    ]


def bench_donate(
    args: argparse.Namespace, app_server: Server, bare_server: Server, settings: str
) -> list[dict[str, Any]]:
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for number in range(args.runs):
        bare.append(wrk(bare_server, "/donate", args.seconds, args.connections, "", {}))
        ours.append(wrk(app_server, "/donate", args.seconds, args.connections, "", {}))
        print(
            f"  donate run {number + 1}: {ours[-1]['rate']:,.0f}/s vs bare {bare[-1]['rate']:,.0f}/s,"
            f" load {ours[-1]['load']}; {cpu_note(ours[-1], bare[-1])}",
            flush=True,
        )
    rate, reference = median_of(ours, "rate"), median_of(bare, "rate")
    ratio = rate / reference
    failures = sum(r["non2xx"] + r["socket_errors"] for r in ours)
    return [
        row(
            "GET /donate: pages/s",
            round(rate),
            "pages/s",
            ">= 0.6 x reference",
            f"bare render of the same HTML: {reference:,.0f}/s; ratio {ratio:.2f}; p99 "
            f"{median_of(ours, 'p99_us') / 1000:.1f} ms vs {median_of(bare, 'p99_us') / 1000:.1f} ms",
            ratio >= 0.6 and failures == 0,
            ratio=round(ratio, 3),
            runs=[round(r["rate"]) for r in ours],
            reference_runs=[round(r["rate"]) for r in bare],
            p99_ms=round(median_of(ours, "p99_us") / 1000, 1),
            failures=failures,
            load=[r["load"] for r in ours],
            settings=settings,
        ),
        cpu_row("GET /donate: CPU per page", ours, bare),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
