"""In development the site's public address (Checkout's return URLs, the
sandbox's webhook deliveries) follows the port `make run` serves, unless
PUBLIC_BASE_URL is set explicitly."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app import create_app
from app.sandbox import SandboxPayments
from app.settings import ROOT, load_settings


def _settings(**environ: str) -> dict[str, object]:
    return load_settings(environ={"SECRET_KEY": "k", **environ})


def test_in_development_the_public_address_follows_the_dev_servers_port() -> None:
    settings = _settings(APP_ENV="development", DEV_HOST="127.0.0.1", DEV_PORT="5003")
    assert settings["PUBLIC_BASE_URL"] == "http://127.0.0.1:5003"
    # A server listening on every interface is still reached on loopback.
    assert (
        _settings(APP_ENV="development", DEV_HOST="0.0.0.0", DEV_PORT="5004")["PUBLIC_BASE_URL"]
        == "http://127.0.0.1:5004"
    )


def test_an_explicit_public_base_url_wins_over_the_dev_servers_port() -> None:
    explicit = _settings(
        APP_ENV="development", DEV_PORT="5003", PUBLIC_BASE_URL="https://donate.example.org/"
    )
    assert explicit["PUBLIC_BASE_URL"] == "https://donate.example.org"
    overridden = load_settings(
        environ={"SECRET_KEY": "k", "APP_ENV": "development", "DEV_PORT": "5003"},
        overrides={"PUBLIC_BASE_URL": "http://127.0.0.1:9999"},
    )
    assert overridden["PUBLIC_BASE_URL"] == "http://127.0.0.1:9999"


def test_only_development_follows_the_dev_server() -> None:
    assert _settings(APP_ENV="test", DEV_PORT="5003")["PUBLIC_BASE_URL"] == "http://donate.test"


def test_the_sandbox_delivers_to_the_port_served(tmp_path: Path) -> None:
    settings = _settings(APP_ENV="development", DEV_PORT="5003")
    app = create_app(
        {**settings, "DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "STRIPE_SECRET_KEY": None}
    )
    payments = app.extensions["donations.payments"]
    assert isinstance(payments, SandboxPayments)
    assert payments.webhook_url == "http://127.0.0.1:5003/webhooks/stripe"
    assert payments.public_base_url == "http://127.0.0.1:5003"
    app.extensions["donations.db"].dispose()


def test_make_run_passes_its_host_and_port_to_the_app() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "run", "PORT=5003", "HOST=127.0.0.1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DEV_HOST=127.0.0.1" in dry_run and "DEV_PORT=5003" in dry_run
    assert "--port 5003" in dry_run
