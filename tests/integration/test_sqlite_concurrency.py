"""The embedded setup (`make run`: SQLite, the dev server's threads, a worker
beside it) under a burst of readers giving at once: every gift goes through,
none meets "database is locked".

The app is served over real HTTP on loopback with the offline sandbox, whose
deliveries reach the app's own webhook receiver; a worker thread with its own
engine (as the separate `donations worker` process has) drains the events
meanwhile.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select

from app import create_app
from app.db import Database
from app.donate.models import Checkout
from app.ledger.records import Payment
from app.sandbox import SandboxPayments
from tests.conftest import WEBHOOK_SECRET
from tests.servers import live_app
from webhooks.inbox import StripeEvent
from webhooks.worker import RetryPolicy, drain, run

READERS = 8
GOOD_CARD = "4242 4242 4242 4242"


class _LateApp:
    """The server starts first: the app's config needs its port."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "donations.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    late = _LateApp()
    with live_app(late) as base:
        config = {
            "APP_ENV": "test",
            "DATABASE_URL": sqlite_url,
            "SECRET_KEY": "test-secret-key",
            "STRIPE_SECRET_KEY": None,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PUBLIC_BASE_URL": base,
            "SANDBOX_WEBHOOK_URL": "",  # the app's own receiver
        }
        late.app = create_app(config)
        yield base, late.app.config
        late.app.extensions["donations.db"].dispose()


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    assert match, f"no field {name}"
    return match.group(1)


def _give(base: str, number: int) -> tuple[int, int, str]:
    """One reader: the form, the gift, the sandbox payment. The two statuses
    and any text that mentions a locked database."""
    with requests.Session() as http:
        page = http.get(f"{base}/donate", timeout=60).text
        gift = http.post(
            f"{base}/donate",
            data={
                "csrf_token": _field(page, "csrf_token"),
                "nonce": _field(page, "nonce"),
                "frequency": "once",
                "currency": "usd",
                "amount": str(10 + number),
                "email": f"reader{number}@example.org",
                "name": f"Reader {number}",
            },
            allow_redirects=False,
            timeout=60,
        )
        if gift.status_code != 303:
            return gift.status_code, 0, gift.text
        path = urlsplit(gift.headers["Location"]).path
        checkout = http.get(f"{base}{path}", timeout=60).text
        paid = http.post(
            f"{base}{path}",
            data={"csrf_token": _field(checkout, "csrf_token"), "card_number": GOOD_CARD},
            allow_redirects=False,
            timeout=60,
        )
        return gift.status_code, paid.status_code, paid.text


def test_eight_readers_giving_at_once_beside_the_worker_all_succeed_on_sqlite(
    served: tuple[str, dict[str, Any]],
) -> None:
    base, config = served
    # The worker is another process in `make run`: its own engine and connections.
    database = Database(config["DATABASE_URL"])
    payments = SandboxPayments.from_config(database, dict(config), database.session)
    policy = RetryPolicy.from_settings(config)
    stop = threading.Event()
    worker = threading.Thread(
        target=run, args=(database, payments, policy), kwargs={"stop": stop, "idle_seconds": 0.01}
    )
    worker.start()
    try:
        with ThreadPoolExecutor(READERS) as pool:
            results = list(pool.map(lambda n: _give(base, n), range(READERS)))
    finally:
        stop.set()
        worker.join(timeout=60)
    drain(database, payments, policy)

    assert [(gift, paid) for gift, paid, _text in results] == [(303, 303)] * READERS, [
        text[:300] for _gift, _paid, text in results
    ]
    assert not any("locked" in text for _gift, _paid, text in results)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Checkout)) == READERS
        assert session.scalar(select(func.count()).select_from(Payment)) == READERS
        errors = session.scalars(
            select(StripeEvent.last_error).where(StripeEvent.last_error.is_not(None))
        ).all()
        statuses = set(session.scalars(select(StripeEvent.status)))
    database.dispose()
    assert errors == []
    assert statuses == {"processed"}
