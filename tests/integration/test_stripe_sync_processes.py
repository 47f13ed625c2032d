"""`donations stripe sync` and `donations worker` as real processes against a
loopback stand-in for Stripe's lists (tests/fake_stripe_lists.py, served over
HTTP): a sync killed with SIGKILL half way through a window and started again
ends with the ledger of one uninterrupted run on a fresh database, and a
SIGTERM to the worker during a scheduled sync lets the sync finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.db import Database
from app.migrate import upgrade
from app.reconcile.models import SyncCursor, SyncRun
from tests import event_factory as ef
from tests.fake_stripe_lists import FakeStripeLists, served
from tests.integration.test_stripe_sync import (
    T0,
    WINDOW,
    a_week_of_stripe,
    journal,
    kinds,
    txn,
)

DONATIONS = Path(sys.executable).parent / "donations"
GIFTS = 120  # two pages of charges and of balance transactions


def with_gifts(fake: FakeStripeLists, count: int) -> FakeStripeLists:
    """`count` more one-time gifts in the week, each settled."""
    for n in range(count):
        created = T0 + 100 + n
        t = txn(f"txn_g{n:03d}", 1000 + n, ef.fee_for(1000 + n), f"ch_g{n:03d}", created)
        fake.add("balance_transactions", t)
        fake.add(
            "charges",
            ef.charge(
                f"ch_g{n:03d}",
                amount=1000 + n,
                created=created,
                payment_intent=f"pi_g{n:03d}",
                customer=f"cus_g{n % 7}",
                email=f"giver{n % 7}@example.org",
                name="Giver",
                balance_transaction=t,
                metadata={"frequency": "once"},
            ),
        )
    return fake


def env_for(app_config: dict[str, Any], base: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": app_config["DATABASE_URL"],
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": app_config["STRIPE_SECRET_KEY"],
        "STRIPE_WEBHOOK_SECRET": app_config["STRIPE_WEBHOOK_SECRET"],
        "STRIPE_API_BASE": base,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_SYNC_REQUESTS_PER_SECOND": "0",
        "STRIPE_SYNC_MAX_RETRIES": "0",
        **extra,
    }


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, f"exited before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_sync_killed_half_way_and_run_again_ends_like_one_uninterrupted_run(
    app: Flask, app_config: dict[str, Any], tmp_path: Path
) -> None:
    fake = with_gifts(a_week_of_stripe(), GIFTS)
    fake.delay = 0.02
    command = [str(DONATIONS), "stripe", "sync", *WINDOW, "--json"]
    database: Database = app.extensions["donations.db"]
    with served(fake) as base:
        env = env_for(app_config, base)
        process = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The second page of charges is asked for while the first is posted.
            wait_for(
                lambda: any(
                    c.startswith("/v1/charges?") and "starting_after" in c for c in fake.calls
                ),
                process,
                "the second page of charges",
            )
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == -signal.SIGKILL
        with database.session() as session:
            cursors = {c.resource: c for c in session.scalars(select(SyncCursor))}
            assert session.scalars(select(SyncRun)).first() is None
        assert cursors["invoice_payments"].done
        assert "charges" not in cursors or not cursors["charges"].done
        posted_before = len(kinds(app))
        assert posted_before < GIFTS  # killed half way: not every gift is in

        again = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.splitlines()[-1])["differences"] == 0

        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
        upgrade(fresh_url)
        uninterrupted = subprocess.run(
            command,
            env={**env, "DATABASE_URL": fresh_url},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert uninterrupted.returncode == 0, uninterrupted.stderr

    fresh = create_app({**app_config, "DATABASE_URL": fresh_url})
    try:
        assert len(journal(app)) > posted_before
        assert journal(fresh) == journal(app)
    finally:
        fresh.extensions["donations.db"].dispose()
    with database.session() as session:
        assert session.scalars(select(SyncCursor)).first() is None


@pytest.mark.settings(STRIPE_SYNC_REQUESTS_PER_SECOND=0, STRIPE_SYNC_MAX_RETRIES=0)
def test_a_sigterm_during_a_scheduled_sync_lets_the_sync_finish(
    app: Flask, app_config: dict[str, Any], tmp_path: Path
) -> None:
    fake = with_gifts(a_week_of_stripe(), GIFTS)
    fake.delay = 0.02
    database: Database = app.extensions["donations.db"]
    with served(fake) as base:
        env = env_for(
            app_config,
            base,
            WORKER_IDLE_SECONDS="0.2",
            STRIPE_SYNC_EVERY_HOURS="24",
            STRIPE_SYNC_LOOKBACK_DAYS="36500",
        )
        process = subprocess.Popen(
            [str(DONATIONS), "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(
                lambda: any(c.startswith("/v1/charges?") for c in fake.calls),
                process,
                "the scheduled sync to list charges",
            )
            signalled_at = len(fake.calls)
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert process.returncode == 0, errors
    assert "SIGTERM, stopping" in errors
    # The sync went on to its end: the rest of the lists, the report, the payouts.
    after = fake.calls[signalled_at:]
    assert any(c.startswith("/v1/balance_transactions?") for c in after)
    assert any(c.startswith("/v1/payouts?") for c in after)
    with database.session() as session:
        run = session.scalars(select(SyncRun)).one()
        assert (run.differences, run.report_only) == (0, False)
        assert session.scalars(select(SyncCursor)).first() is None
    charges = [k for k in kinds(app) if k[0] == "donation"]
    assert len(charges) == GIFTS + 2  # every gift, and the week's two
