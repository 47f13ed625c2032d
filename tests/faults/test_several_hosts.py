"""Several hosts: two app instances (gunicorn, each its own port) and two
workers, separate processes against one PostgreSQL and one Redis. A burst of
signed events and donation form posts spread across both instances: every
event is stored and applied once, the ledger equals one clean run's, each form
post let through made one Checkout Session; and the rate limits (the donate
cap per address, the login limit) live in Redis, so the two instances share
one count.

Sizes: CI 400 deliveries and 20 form posts; SLOW_TESTS=1 5,000 and 100.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from app.db import Database
from app.donate.models import Checkout
from tests.conftest import REDIS_URL
from tests.faults.harness import (
    SLOW,
    StripeStub,
    add_checkouts,
    app_env,
    build_stream,
    deliver_until_acknowledged,
    event_counts,
    expected_ledger,
    ledger_of,
    start_gunicorn,
    start_worker,
    wait_for,
)

DELIVERIES, FORM_POSTS = (5_000, 100) if SLOW else (400, 20)
LOGIN_LIMIT = 6
DONATE_CAP = FORM_POSTS * 3 // 5  # per address; each instance alone would allow it all
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]*)"')
NONCE = re.compile(r'name="nonce"[^>]*value="([^"]*)"')


@pytest.mark.timeout(1800 if SLOW else 300)
def test_two_instances_and_two_workers_keep_one_exact_ledger_and_share_the_limits(
    pg_url: str,
    pg: Database,
    sqlite_template: Path,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    stream = build_stream(DELIVERIES, seed=5, tag="hosts")
    add_checkouts(pg, stream)
    stripe = StripeStub(stream.scenario.stubs)
    with stripe.serve() as stripe_base:
        expected = expected_ledger(sqlite_template, tmp_path, stream, stripe_base)
        env = app_env(
            pg_url,
            stripe_base,
            tmp_path,
            REDIS_URL=REDIS_URL,
            RATE_LIMIT_KEY_PREFIX=redis_prefix,
            LOGIN_RATE_LIMIT=f"{LOGIN_LIMIT} per minute",
            DONOR_FORM_LIMIT_PER_ADDRESS=f"{DONATE_CAP} per minute",
            PUBLIC_BASE_URL="http://127.0.0.1",
        )
        processes = []
        try:
            first, first_base = start_gunicorn(env, tmp_path / "web1.log")
            processes.append(first)
            second, second_base = start_gunicorn(env, tmp_path / "web2.log")
            processes.append(second)
            processes += [start_worker(env, tmp_path / f"worker{n}.log") for n in (1, 2)]
            bases = [first_base, second_base]

            halves = [stream.deliveries[0::2], stream.deliveries[1::2]]
            counts: list[dict[str, int]] = [{}, {}]

            def deliver(n: int) -> None:
                counts[n] = deliver_until_acknowledged(bases[n], halves[n], threads=3, timeout=240)

            senders = [threading.Thread(target=deliver, args=(n,)) for n in (0, 1)]
            for sender in senders:
                sender.start()
            redirects = [_give(bases[n % 2], n) for n in range(FORM_POSTS)]
            for sender in senders:
                sender.join()
            logins = [_failed_login(bases[n % 2]) for n in range(LOGIN_LIMIT + 4)]

            wait_for(
                lambda: event_counts(pg) == {"processed": stream.unique},
                timeout=240,
                what="every event processed by the two workers",
            )
            assert all(p.popen.poll() is None for p in processes)
        finally:
            for process in processes:
                process.stop()

    assert all(set(c) == {"200"} for c in counts), counts
    assert ledger_of(pg) == expected
    # The donate cap per address is one count across both instances: posts
    # alternate, so each instance alone saw fewer than the cap. Each post let
    # through made one Checkout row and its own Checkout Session.
    statuses = [r.status_code for r in redirects]
    assert statuses == [303] * DONATE_CAP + [429] * (FORM_POSTS - DONATE_CAP), statuses
    through = [r.headers["Location"] for r in redirects if r.status_code == 303]
    assert all("checkout.stripe.test" in location for location in through)
    assert len(set(through)) == DONATE_CAP
    with pg.session(immediate=False) as session:
        made = session.scalar(
            select(func.count())
            .select_from(Checkout)
            .where(Checkout.stripe_checkout_session_id.like("cs_test_stub%"))
        )
    assert made == DONATE_CAP
    assert stripe.calls.count(("POST", "/v1/checkout/sessions")) == DONATE_CAP
    # One login limit across both instances: alternating, the limit is reached
    # after LOGIN_LIMIT attempts in all (each instance alone would allow that many).
    assert logins == [401] * LOGIN_LIMIT + [429] * 4, logins


def _give(base: str, n: int) -> requests.Response:
    http = requests.Session()
    page = http.get(f"{base}/donate", timeout=30).text
    csrf, nonce = CSRF.search(page), NONCE.search(page)
    assert csrf and nonce, page[:500]
    return http.post(
        f"{base}/donate",
        timeout=30,
        allow_redirects=False,
        data={
            "csrf_token": csrf.group(1),
            "nonce": nonce.group(1),
            "frequency": "once",
            "currency": "usd",
            "amount": str(10 + n),
            "email": f"burst{n}@example.org",
            "name": "Burst Reader",
        },
    )


def _failed_login(base: str) -> int:
    http = requests.Session()
    page = http.get(f"{base}/login", timeout=30).text
    csrf = CSRF.search(page)
    assert csrf, page[:500]
    return http.post(
        f"{base}/login",
        timeout=30,
        allow_redirects=False,
        data={
            "email": "nobody@newsroom.test",
            "password": "not-the-password-123",
            "csrf_token": csrf.group(1),
        },
    ).status_code
