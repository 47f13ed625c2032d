"""Fixtures of the fault and several-host tests: the run's PostgreSQL database
(emptied before and after each test; the processes under test connect to it
themselves) and a Database on it for arranging and asserting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.db import Database
from tests.faults.harness import truncate
from tests.integration.test_receipts import Mailbox

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    database = Database(postgres_url)
    truncate(database)
    database.dispose()
    yield postgres_url
    database = Database(postgres_url)
    truncate(database)
    database.dispose()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.dispose()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()
