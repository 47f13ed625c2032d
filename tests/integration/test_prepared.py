"""app.db's prepared statements on a session (the posting path): on
PostgreSQL they go to psycopg's cursor directly, so what SQLAlchemy's own
execution gave must still hold: the rows and their result API, the
statement events, a driver error raised as SQLAlchemy's (a deadlock still
recognised as a conflict by the worker), and objects made from Core rows
that behave as loaded ones."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import bindparam, event, literal_column, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.clock import utcnow
from app.db import Database, execute_prepared, first_by, insert_missing_entity, update_record
from app.donors import Donor, attach_customer, donor_for_customer, find_or_create_donor
from app.donors.models import StripeCustomer
from app.ledger.records import Membership, get_or_insert
from webhooks.errors import describe_error, is_conflict


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


def _by_email() -> object:
    donors = Donor.__table__
    return select(donors.c.id, donors.c.email).where(
        donors.c.email == bindparam("email", type_=donors.c.email.type)
    )


def test_rows_come_back_with_the_result_api_the_posting_path_uses(database: Database) -> None:
    with database.session() as session, session.begin():
        donor = find_or_create_donor(session, "Ada@Example.org", "Ada")
        statement = _by_email()
        result = execute_prepared(session, statement, {"email": "ada@example.org"})
        assert result.scalar() == donor.id
        row = execute_prepared(session, statement, {"email": "ada@example.org"}).first()
        assert (row.id, row.email) == (donor.id, "ada@example.org")
        mapping = execute_prepared(session, statement, {"email": "ada@example.org"}).mappings()
        assert mapping.one() == {"id": donor.id, "email": "ada@example.org"}
        nobody = {"email": "nobody@example.org"}
        assert execute_prepared(session, statement, nobody).scalar() is None
        assert execute_prepared(session, statement, nobody).first() is None
        assert execute_prepared(session, statement, {"email": "x@example.org"}).all() == []


def test_a_name_used_twice_and_a_literal_percent_sign_survive_positional_placeholders(
    database: Database,
) -> None:
    # On PostgreSQL the statement goes out with $1, $2 (a name used twice is
    # one placeholder) and the percent sign the dialect doubled is one again.
    donors = Donor.__table__
    key = bindparam("email", type_=donors.c.email.type)
    statement = select(donors.c.id).where(
        (donors.c.email == key) | (donors.c.name == key),
        donors.c.email.like(literal_column("'%@example.org'")),
    )
    sent: list[str] = []

    def record(conn: object, cursor: object, sql: str, *args: object) -> None:
        sent.append(sql)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.session() as session, session.begin():
            donor = find_or_create_donor(session, "pct@example.org", "Pat")
            found = execute_prepared(session, statement, {"email": "pct@example.org"}).scalar()
            by_name = execute_prepared(session, statement, {"email": "Pat"}).scalar()
    finally:
        event.remove(database.engine, "before_cursor_execute", record)

    assert found == by_name == donor.id
    if database.dialect == "postgresql":
        [sql] = [s for s in sent if "LIKE" in s][:1]
        assert "$1" in sql and "$2" not in sql and "'%@example.org'" in sql


def test_statement_events_still_fire_for_prepared_statements(database: Database) -> None:
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    with database.session() as session, session.begin():
        execute_prepared(session, _by_email(), {"email": "ada@example.org"})
    assert any("FROM donors" in statement for statement in seen)


def test_a_driver_error_is_raised_as_sqlalchemys_and_described_without_values(
    database: Database,
) -> None:
    with database.session() as session:
        with pytest.raises(IntegrityError) as raised, session.begin():
            donor = find_or_create_donor(session, "ada@example.org")
            # A customer link to a donor that does not exist: a foreign key error.
            insert_missing_entity(
                session,
                StripeCustomer,
                {
                    "stripe_customer_id": "cus_x",
                    "donor_id": donor.id + 1000,
                    "livemode": False,
                    "created_at": utcnow(),
                },
                index=["stripe_customer_id"],
            )
        assert isinstance(raised.value, DBAPIError)
        assert not is_conflict(raised.value)
        text = describe_error(raised.value)
        assert text.startswith("IntegrityError: ")
        assert "ada@example.org" not in text
        # The session is usable again after the rollback.
        with session.begin():
            assert first_by(session, Donor, "email", "ada@example.org") is None


def test_objects_made_from_core_rows_behave_as_loaded(database: Database) -> None:
    with database.session() as session, session.begin():
        donor = find_or_create_donor(session, "ada@example.org")
        attach_customer(session, donor, "cus_ada", livemode=False)
        attach_customer(session, donor, "cus_ada", livemode=False)  # first writer wins
    with database.session() as session, session.begin():
        found = donor_for_customer(session, "cus_ada")
        assert found is not None and found.email == "ada@example.org"
        assert donor_for_customer(session, "cus_nobody") is None
        assert found is donor_for_customer(session, "cus_ada")  # the session's own
        found.name = "Ada"  # an update of a Core-made object is flushed
    with database.session() as session:
        again = first_by(session, Donor, "email", "ada@example.org")
        assert again is not None and again.name == "Ada"
        assert session.scalar(select(StripeCustomer.donor_id)) == again.id


def test_get_or_insert_reads_a_held_row_again(database: Database) -> None:
    with database.session() as session, session.begin():
        first = get_or_insert(
            session,
            Membership,
            "stripe_subscription_id",
            "sub_1",
            lock=True,
            status="incomplete",
            livemode=False,
        )
        assert first.status == "incomplete"
    with database.session() as session, session.begin():
        found = get_or_insert(
            session, Membership, "stripe_subscription_id", "sub_1", lock=True, status="active"
        )
        assert found.status == "incomplete"  # the row that was there, not the values given
        found.status = "active"
        session.flush()
        # Already in the session: the same object, read again.
        assert (
            get_or_insert(session, Membership, "stripe_subscription_id", "sub_1", status="x")
            is found
        )
        assert found.status == "active"


def test_update_record_writes_only_what_changes_and_the_object_holds_it(
    database: Database,
) -> None:
    # A clean record: one UPDATE of the changed columns and updated_at on
    # PostgreSQL, nothing left for the flush; unchanged values: no statement;
    # a record with other changes pending: set for the flush (one UPDATE).
    statements: list[str] = []

    def record(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    with database.session() as session, session.begin():
        membership = get_or_insert(
            session, Membership, "stripe_subscription_id", "sub_u", status="incomplete"
        )
        before = membership.updated_at
        event.listen(database.engine, "before_cursor_execute", record)
        try:
            update_record(membership, {"status": "active", "currency": None})
            first = list(statements)
            session.flush()
            after_flush = len(statements)
            update_record(membership, {"status": "active"})
            unchanged = len(statements)
            membership.interval = "month"  # pending: the next write waits for the flush
            update_record(membership, {"status": "canceled"})
            pending = len(statements)
            session.flush()
        finally:
            event.remove(database.engine, "before_cursor_execute", record)
        updates = [s for s in statements if s.startswith("UPDATE")]
        if database.dialect == "postgresql":
            assert len(first) == 1 and first[0].startswith("UPDATE memberships SET status=")
            assert "updated_at" in first[0] and "currency" not in first[0]
            assert after_flush == unchanged == pending == 1  # nothing for the flush to write
            assert len(updates) == 2
        else:
            assert first == [] and len(updates) == 2  # both at a flush
        assert membership.updated_at >= before
    with database.session() as session:
        row = session.scalars(
            select(Membership).where(Membership.stripe_subscription_id == "sub_u")
        ).one()
        assert (row.status, row.interval, row.currency) == ("canceled", "month", None)


def test_a_fresh_process_makes_its_first_object_from_a_core_row(db_url: str) -> None:
    """The first thing a new worker or `stripe sync` does may be a donor made
    from an INSERT's row, before any query has configured the mappers (the
    sync batch test, run alone, failed so: the attributes had no
    implementation yet). A process of its own, since this one's mappers are
    configured already."""
    script = (
        "import sys\n"
        "from app.db import Database\n"
        "from app.donors import find_or_create_donor\n"
        "database = Database(sys.argv[1])\n"
        "with database.session() as session, session.begin():\n"
        "    donor = find_or_create_donor(session, 'first@example.org', 'First')\n"
        "    assert donor.email == 'first@example.org' and donor.id\n"
        "    session.rollback()\n"
        "database.dispose()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
