"""What the fault and several-host tests share: a stand-in for Stripe's API on
loopback (answering a scenario's look-ups and creating Checkout Sessions), a
stream of coherent events with duplicates in shuffled order, the real
`donations` processes (worker, gunicorn) started and killed, and the ledger
as a value to compare.

Processes get their settings from the environment only, as in production;
nothing here patches the app.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select, text

from app import ledger
from app.db import Database
from app.outbox.models import OutboxJob
from tests import event_factory as ef
from tests.conftest import STRIPE_TEST_KEY, WEBHOOK_SECRET
from tests.integration.test_handlers import add_checkout
from tests.servers import free_port
from tests.stripe_helpers import encode, sign
from webhooks.inbox import StripeEvent

ROOT = Path(__file__).resolve().parents[2]
SLOW = bool(os.environ.get("SLOW_TESTS"))
DONATIONS = str(Path(sys.executable).with_name("donations"))


# -- Stripe on loopback ------------------------------------------------------------------


class StripeStub:
    """Stripe's API for what processing may ask (a scenario's GET stubs, by path
    and query) and `POST /v1/checkout/sessions`; anything else is a 404 in
    Stripe's shape. Counts every call, thread-safe."""

    def __init__(self, stubs: list[ef.Stub] | None = None) -> None:
        self.routes: dict[str, list[ef.Stub]] = {}
        for stub in stubs or []:
            self.routes.setdefault(f"/v1{stub.path}", []).append(stub)
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def answer(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.calls.append((method, path))
            number = len(self.calls)
        if method == "POST" and path == "/v1/checkout/sessions":
            session_id = f"cs_test_stub{number}"
            return 200, {
                "id": session_id,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "status": "open",
                "payment_status": "unpaid",
            }
        for stub in self.routes.get(path, []):
            if stub.query is None or stub.query == query:
                return stub.status, stub.body
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such object",
            }
        }

    @contextmanager
    def serve(self) -> Iterator[str]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = stub.answer(
                    method, url.path, dict(urllib.parse.parse_qsl(url.query))
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_stub")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.reply("GET")

            def do_POST(self) -> None:
                self.reply("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{self.server.server_port}"
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


# -- the stream ----------------------------------------------------------------------


@dataclass
class Stream:
    """Coherent payments in groups (a gift with a partial refund, a membership
    with a renewal and a dispute won or lost, a payout with a Stripe fee), the
    checkouts they came from, and their deliveries: every event at least once,
    `duplicates` of the deliveries repeats, all shuffled."""

    scenario: ef.Scenario
    checkouts: list[tuple[str, str, str, int]]  # id, email, frequency, amount
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unique(self) -> int:
        return len(self.scenario.events)


def build_stream(
    deliveries: int,
    *,
    duplicates: float = 0.3,
    seed: int = 12,
    start: int | None = None,
    tag: str = "k",
) -> Stream:
    """About `deliveries` deliveries, `duplicates` of them repeats. `start`
    defaults to a day ago, so every payment is news and gets its receipt."""
    rng = random.Random(seed)
    begin = start if start is not None else int(time.time()) - ef.DAY
    wanted_unique = round(deliveries * (1 - duplicates))
    parts: list[ef.Scenario] = []
    checkouts: list[tuple[str, str, str, int]] = []
    count, g = 0, 0
    while count < wanted_unique:
        at = begin + g * 120
        once = ef.one_time_donation(f"{tag}{g}o", amount=2500 + g, start=at)
        member = ef.membership(f"{tag}{g}m", amount=1000 + g, start=at + 10, renewals=1)
        refund = ef.partial_refunds(
            once.facts["charge_object"], [500], start=at + 60, tag=f"{tag}{g}"
        )
        disputed = member.facts["charges"][0]
        dispute = (ef.dispute_won if g % 2 else ef.dispute_lost)(
            disputed, 1000 + g, start=at + 70, tag=f"{tag}{g}"
        )
        payout = ef.payout_paid(f"{tag}{g}", 3000 + g, start=at + 90, stripe_fee=200)
        group = [once, member, refund, dispute, payout]
        parts.extend(group)
        checkouts.append((once.facts["checkout_id"], once.facts["email"], "once", 2500 + g))
        checkouts.append((member.facts["checkout_id"], member.facts["email"], "month", 1000 + g))
        count += sum(len(p.events) for p in group)
        g += 1
    scenario = ef.Scenario()
    for part in parts:
        scenario.events.extend(part.events)
        scenario.stubs.extend(part.stubs)
    events = list(scenario.events)
    repeats = [rng.choice(events) for _ in range(max(0, deliveries - len(events)))]
    sent = events + repeats
    rng.shuffle(sent)
    return Stream(scenario, checkouts, sent)


def add_checkouts(database: Database, stream: Stream) -> None:
    with database.session() as session:
        for checkout_id, email, frequency, amount in stream.checkouts:
            add_checkout(
                session,
                checkout_id,
                email,
                frequency=frequency,
                amount=amount,
                session_id=f"cs_{checkout_id[3:]}",
            )
        session.commit()


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = encode(event)
    return body, {
        "Stripe-Signature": sign(body, WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }


def deliver_until_acknowledged(
    base: str,
    events: list[dict[str, Any]],
    *,
    threads: int = 4,
    timeout: float = 120,
    pause: float = 0.2,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Send every delivery as Stripe does: whatever gets no 2xx (an error, a
    refused connection, a timeout) is sent again until it does. Returns the
    tries per status ("error" for no answer)."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    pending = list(range(len(events)))
    deadline = time.monotonic() + timeout

    def one(http: requests.Session, index: int) -> bool:
        body, headers = signed(events[index])
        try:
            status = str(
                http.post(
                    f"{base}/webhooks/stripe", data=body, headers=headers, timeout=10
                ).status_code
            )
        except requests.RequestException:
            status = "error"
        with lock:
            counts[status] = counts.get(status, 0) + 1
        return status.startswith("2")

    def worker() -> None:
        http = requests.Session()
        while True:
            with lock:
                if not pending:
                    return
                index = pending.pop()
            while not one(http, index):
                if stop is not None and stop.is_set():
                    return
                assert time.monotonic() < deadline, "deliveries were never acknowledged"
                http.close()
                http = requests.Session()
                time.sleep(pause)

    runners = [threading.Thread(target=worker) for _ in range(threads)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    return counts


# -- the ledger as a value ----------------------------------------------------------------


Ledger = tuple[dict[str, Any], list[list[str]]]


def ledger_of(database: Database) -> Ledger:
    with database.session(immediate=False) as session:
        problems = ledger.verify(session)
        assert problems == [], problems  # this module's asserts are not rewritten
        return ledger.entries_by_key(session), list(ledger.export_rows(session))


def expected_ledger(template: Path, tmp: Path, stream: Stream, stripe_base: str) -> Ledger:
    """The ledger of one clean run: each event once, in Stripe's order, in this
    process on a fresh SQLite copy, asking the same stand-in for Stripe."""
    from app.stripe_api import StripeApi
    from tests.stripe_helpers import API_VERSION
    from webhooks.handlers import apply_event

    path = tmp / "expected.db"
    path.write_bytes(template.read_bytes())
    database = Database(f"sqlite:///{path}")
    try:
        add_checkouts(database, stream)
        stripe = StripeApi(
            STRIPE_TEST_KEY, api_version=API_VERSION, api_base=stripe_base, max_network_retries=0
        )
        for event in stream.scenario.events:
            with database.session() as session:
                apply_event(session, event, stripe)
                session.commit()
        return ledger_of(database)
    finally:
        database.dispose()


def event_counts(database: Database) -> dict[str, int]:
    with database.session(immediate=False) as session:
        rows = session.execute(
            select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
        ).all()
        return {status: count for status, count in rows}


def job_counts(database: Database) -> dict[str, int]:
    with database.session(immediate=False) as session:
        rows = session.execute(
            select(OutboxJob.status, func.count()).group_by(OutboxJob.status)
        ).all()
        return {status: count for status, count in rows}


def truncate(database: Database) -> None:
    from app.db import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def in_process_settings(database_url: str, stripe_base: str) -> dict[str, Any]:
    """`create_app`'s settings for a test that builds the app in its own
    process (to seed a stream, or to run the worker in a thread it kills)."""
    return {
        "APP_ENV": "test",
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_base,
    }


# -- processes -------------------------------------------------------------------------


def app_env(database_url: str, stripe_base: str, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a `donations` process in these tests: quick retries,
    Stripe at the stand-in, the suite's webhook secret, mail without an SMTP
    server written under `folder`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "REDIS_"))}
    env.update(
        APP_ENV="test",
        DATABASE_URL=database_url,
        SECRET_KEY="faults-test-secret-key-long-enough-0123456789",
        STRIPE_SECRET_KEY=STRIPE_TEST_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_base,
        STRIPE_MAX_NETWORK_RETRIES="0",
        WEBHOOK_MAX_ATTEMPTS="100",
        WEBHOOK_RETRY_BASE_SECONDS="0.05",
        WEBHOOK_RETRY_MAX_SECONDS="0.5",
        OUTBOX_MAX_ATTEMPTS="100",
        OUTBOX_RETRY_BASE_SECONDS="0.05",
        OUTBOX_RETRY_MAX_SECONDS="0.5",
        WORKER_IDLE_SECONDS="0.1",
        PYTHONUNBUFFERED="1",
        MAIL_FOLDER=str(folder / "mail"),
    )
    env.update(extra)
    return env


@dataclass
class Process:
    """A child in its own process group, its output kept in a file."""

    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9 the whole group (gunicorn's workers too), then reap."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(args: list[str], env: dict[str, str], log: Path) -> Process:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(popen, log)


def start_worker(env: dict[str, str], log: Path) -> Process:
    return start([DONATIONS, "worker"], env, log)


def start_gunicorn(
    env: dict[str, str], log: Path, *, port: int | None = None, workers: int = 2
) -> tuple[Process, str]:
    port = port or free_port()
    process = start(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "app:create_app()"],
        {**env, "PORT": str(port), "WEB_WORKERS": str(workers)},
        log,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, process)
    return process, base


def wait_until_up(base: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert process.popen.poll() is None, process.output()[-3000:]
        assert time.monotonic() < deadline, f"{base} did not start"
        time.sleep(0.1)


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DONATIONS, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for(condition: Any, *, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


# -- a PostgreSQL cluster of the test's own ---------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class Cluster:
    """`initdb` into a temporary folder and `pg_ctl` on a free loopback port
    (its socket in that folder): a server the test may stop and start, never the
    shared one. As root, the server runs as the `postgres` user."""

    def __init__(self, folder: Path) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None
        self.bin = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/donations"
        self.log = folder / "postgres.log"

    def run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        import psycopg

        with psycopg.connect(self.url.replace("/donations", "/postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE donations")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c fsync=off "
            "-c max_connections=60"
        )
        self.run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with suppress(subprocess.CalledProcessError):
                self.stop("immediate")
