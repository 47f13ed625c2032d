"""Several hosts, as far as the caps go: two gunicorn processes on different
ports, one PostgreSQL and one Redis, and a script spreading its form posts
over both: the Checkout Sessions a stub Stripe on loopback is asked for stay
within one cap, not one per process (issue 12, item 5)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from tests.conftest import REDIS_URL, STRIPE_TEST_KEY
from tests.integration.test_donate import checkout_session
from tests.servers import free_port, live_app

ROOT = Path(__file__).resolve().parents[2]


class StubStripe:
    """Stripe's Checkout Sessions endpoint on loopback: a new session per call, counted."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if request.method == "POST" and request.path == "/v1/checkout/sessions":
            session_id = f"cs_test_hosts{len(self.created):06d}"
            self.created.append(session_id)
            body = checkout_session(
                id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}"
            )
            response = Response(json.dumps(body), content_type="application/json")
        else:
            response = Response('{"error": {"message": "not stubbed"}}', status=404)
        return response(environ, start_response)


def start_gunicorn(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env={**env, "PORT": str(port), "WEB_WORKERS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60  # a loaded machine boots workers slowly
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)


@pytest.fixture
def servers(
    db_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[list[str], StubStripe]]:
    stub = StubStripe()
    with live_app(stub) as stripe_base:
        env = {
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": db_url,
            "SECRET_KEY": "several-hosts-test-secret-key-of-length",
            "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
            "STRIPE_API_BASE": stripe_base,
            "STRIPE_MAX_NETWORK_RETRIES": "0",
            "REDIS_URL": REDIS_URL,
            "RATE_LIMIT_KEY_PREFIX": redis_prefix,
            "DONOR_FORM_LIMIT_PER_ADDRESS": "6 per hour",
            "DONOR_FORM_LIMIT_PER_EMAIL": "1000 per hour",
            "DONOR_FORM_LIMIT_SITE": "1000 per hour",
        }
        started = [start_gunicorn(env, tmp_path / f"gunicorn-{n}.log") for n in range(2)]
        try:
            for n, (process, base) in enumerate(started):
                wait_until_up(process, base, tmp_path / f"gunicorn-{n}.log")
            yield [base for _process, base in started], stub
        finally:
            for process, _base in started:
                process.terminate()
            for process, _base in started:
                process.wait(timeout=20)


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_processes_on_one_redis_hold_a_script_to_one_cap(
    servers: tuple[list[str], StubStripe],
) -> None:
    bases, stub = servers
    clients = []
    for base in bases:
        client = requests.Session()  # each host its own cookie jar (cookies ignore ports)
        html = client.get(f"{base}/donate", timeout=30).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
            r'name="csrf_token" value="([^"]+)"', html
        )
        assert token
        clients.append((client, base, token.group(1)))
    statuses = []
    for n, (client, base, token) in zip(range(60), itertools.cycle(clients), strict=False):
        response = client.post(
            f"{base}/donate",
            data={
                "csrf_token": token,
                "nonce": f"hosts-{n:012d}-nonce",
                "frequency": "once",
                "currency": "usd",
                "amount": str(5 + n),
                "email": f"tester{n}@example.net",
                "name": "Card Tester",
            },
            allow_redirects=False,
            timeout=30,
        )
        statuses.append(response.status_code)
    assert len(stub.created) == 6  # one cap for both processes, not 6 each
    assert statuses.count(303) == 6 and statuses.count(429) == 54
