"""Shared fixtures: a real database per test (SQLite and PostgreSQL), the app,
its client and CLI runner, and Stripe stubbed at HTTP with `responses`.

PostgreSQL: one throwaway database per run on 127.0.0.1:5432 (user postgres),
migrated once and truncated after each test. Where it is not reachable, its
tests skip, except when CI is set: then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app import create_app
from app import schema as _schema  # noqa: F401  (every table, for truncation and the schema check)
from app.db import Base, Database
from app.i18n.catalogs import compile_catalogs
from app.migrate import upgrade

IN_CI = bool(os.environ.get("CI"))
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STRIPE_TEST_KEY = "sk_test_donations_suite"
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own; only a run's prefix is touched
WEBHOOK_SECRET = "whsec_test_donations_suite"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The .mo files are built from the committed .po (as `make` does), so a
    bare `pytest` in a fresh clone sees every language."""
    compile_catalogs()


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    problem = _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"CI requires PostgreSQL: {problem}")
        pytest.skip(problem)
    name = f"donations_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        existing = set(
            conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        )
        names = [t.name for t in Base.metadata.sorted_tables if t.name in existing]
        tables = ", ".join(f'"{name}"' for name in names)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the run's PostgreSQL
    database truncated afterwards. Tests run once per backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "donations.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    _truncate_postgres(url)


@pytest.fixture
def app_config(db_url: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The app's settings; `@pytest.mark.settings(NAME=value)` overrides them
    for one test (or override this fixture in a module)."""
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    return {
        "APP_ENV": "test",
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test-secret-key",
        "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        **overrides,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(app_config)
    yield application
    application.extensions["donations.db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    """A session on the app's database, for arranging and asserting on rows.
    Deferred on SQLite: a test reading between requests holds no write lock."""
    database: Database = app.extensions["donations.db"]
    session = database.session(immediate=False)
    yield session
    session.close()


@pytest.fixture(autouse=True)
def stripe_http() -> Iterator[responses.RequestsMock]:
    """Every test runs with Stripe stubbed at HTTP: a call nobody stubbed fails
    the test instead of leaving the machine. Loopback passes through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://(127\.0\.0\.1|localhost)(:\d+)?/"))
        yield mock


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (RATE_LIMIT_KEY_PREFIX),
    its keys deleted afterwards. Skips without Redis, except in CI."""
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"CI requires Redis at 127.0.0.1:6379: {exc}")
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
    prefix = f"donations-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    for key in connection.scan_iter(match=f"*{prefix}*"):
        connection.delete(key)
    connection.close()
