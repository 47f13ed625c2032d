"""Production's web server: gunicorn with config/gunicorn.conf.py serves the app,
and its access log names paths without their query strings (no donor email)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.migrate import upgrade
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_serves_the_app_and_logs_no_query_string(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'donations.db'}"
    upgrade(database)
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": database,
        "SECRET_KEY": "gunicorn-test-secret-key-of-some-length",
        "PORT": str(port),
        "WEB_WORKERS": "1",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60  # a loaded machine boots workers slowly
            while True:
                try:
                    health = requests.get(f"{base}/healthz", timeout=10)
                    break
                except requests.RequestException:
                    assert server.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "gunicorn did not start"
                    time.sleep(0.2)
            assert health.status_code == 200
            page = requests.get(f"{base}/donate?utm_source=reader%40example.org", timeout=30)
            assert page.status_code == 200
            # /metrics adds up every worker's counters (prometheus multiprocess files)
            metrics = requests.get(f"{base}/metrics", timeout=30)
            assert metrics.status_code == 200
            assert 'endpoint="donate.form"' in metrics.text
            assert "donations_webhook_events" in metrics.text
        finally:
            server.terminate()
            server.wait(timeout=20)
    text = log.read_text()
    assert '"GET /donate HTTP/1.1" 200' in text
    assert "reader" not in text and "example.org" not in text
