"""Browser tests: Playwright (from PyPI) driving Debian's Chromium, headless,
against the app served live on loopback with the offline payments sandbox.

Never `playwright install`: the browser is /usr/bin/chromium. Where it is
missing the tests skip, except when CI is set: then they fail. Screenshots go
to test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import WEBHOOK_SECRET
from tests.servers import live_app

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


class LateApp:
    """A WSGI app that forwards to `app`, set once it exists: the live server
    must start first because the app's settings need its address."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "the app was not set"
        return self.app(environ, start_response)


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires the browser tests: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def live() -> Iterator[tuple[str, LateApp]]:
    late = LateApp()
    with live_app(late) as base:  # type: ignore[arg-type]
        yield base, late


@pytest.fixture
def app_config(
    db_url: str, live: tuple[str, LateApp], request: pytest.FixtureRequest
) -> dict[str, Any]:
    """The sandbox (no Stripe key) delivering its signed events to the live
    server's own webhook route; cheap password hashing for speed.
    `@pytest.mark.settings(NAME=value)` overrides them for one test."""
    base, _late = live
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    return {
        "APP_ENV": "test",
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "browser-test-secret-key",
        "STRIPE_SECRET_KEY": None,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PUBLIC_BASE_URL": base,
        "SANDBOX_WEBHOOK_URL": f"{base}/webhooks/stripe",
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_KIB": 8192,
        "PASSWORD_HASH_PARALLELISM": 1,
        **overrides,
    }


@pytest.fixture
def served(app: Flask, live: tuple[str, LateApp]) -> str:
    """The app, answering on the live server; yields its base URL."""
    base, late = live
    late.app = app
    return base


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    folder = ARTIFACTS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
