"""`donations staff ...`: create, disable, reset-password and list, with the
password from standard input; bad input is one line on stderr and exit 2."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli import main
from app.staff import AuditEntry, Staff, StaffSession, start_session, verify_password

PASSWORD = "correct horse battery staple"


def fresh(db: Session) -> None:
    db.rollback()
    db.expire_all()


def create(runner: FlaskCliRunner, email: str, role: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return runner.invoke(
        main,
        args=["staff", "create", email, "--role", role, "--password-stdin"],
        input=password + "\n",
    )


def test_staff_create_with_a_password_from_stdin_makes_a_working_account(
    app: Flask, runner: FlaskCliRunner, db: Session
) -> None:
    result = create(runner, "Fin@Newsroom.test", "finance")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    staff = db.scalar(select(Staff).where(Staff.email == "fin@newsroom.test"))
    assert staff is not None and staff.role == "finance"
    assert staff.password_hash.startswith("$argon2id$")
    assert verify_password(app.extensions["donations.password_hasher"], staff, PASSWORD)
    [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "staff_created"))
    assert entry.actor_id is None and entry.details["role"] == "finance"
    assert PASSWORD not in entry.detail


def test_staff_create_asks_for_the_password_twice_without_echoing_it(
    runner: FlaskCliRunner, db: Session
) -> None:
    result = runner.invoke(
        main,
        args=["staff", "create", "ana@newsroom.test", "--role", "admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert db.scalar(select(Staff.role).where(Staff.email == "ana@newsroom.test")) == "admin"


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        ("ana@newsroom.test", "owner", PASSWORD, "'--role': 'owner' is not one of"),
        ("not-an-email", "viewer", PASSWORD, "not a valid email address"),
        ("ana@newsroom.test", "viewer", "too short", "at least 12 characters"),
    ],
)
def test_staff_create_refuses_bad_input_in_one_line_with_exit_2(
    runner: FlaskCliRunner, db: Session, email: str, role: str, password: str, message: str
) -> None:
    result = create(runner, email, role, password)
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert message in result.output
    assert password not in result.output
    assert db.scalar(select(Staff)) is None


def test_staff_create_refuses_an_existing_email(runner: FlaskCliRunner, db: Session) -> None:
    assert create(runner, "ana@newsroom.test", "viewer").exit_code == 0
    again = create(runner, "ANA@newsroom.test", "admin")
    assert again.exit_code == 2 and "exists already" in again.output
    assert db.scalar(select(Staff.role)) == "viewer"


def test_staff_disable_and_reset_password_end_every_session(
    app: Flask, runner: FlaskCliRunner, db: Session
) -> None:
    assert create(runner, "ana@newsroom.test", "admin").exit_code == 0
    staff = db.scalar(select(Staff))
    assert staff is not None
    start_session(db, staff)
    db.commit()

    new_password = "another long passphrase"
    reset = runner.invoke(
        main,
        args=["staff", "reset-password", "ana@newsroom.test", "--password-stdin"],
        input=new_password + "\n",
    )
    assert reset.exit_code == 0, reset.output
    assert new_password not in reset.output
    fresh(db)
    staff = db.scalar(select(Staff))
    assert staff is not None
    assert verify_password(app.extensions["donations.password_hasher"], staff, new_password)
    assert all(row.revoked_at is not None for row in db.scalars(select(StaffSession)))

    start_session(db, staff)
    db.commit()
    disabled = runner.invoke(main, args=["staff", "disable", "ana@newsroom.test"])
    assert disabled.exit_code == 0, disabled.output
    fresh(db)
    assert db.scalar(select(Staff.disabled_at)) is not None
    assert all(row.revoked_at is not None for row in db.scalars(select(StaffSession)))
    actions = list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["staff_created", "password_reset", "staff_disabled"]


def test_staff_commands_on_an_unknown_email_exit_2(runner: FlaskCliRunner) -> None:
    for args in (
        ["disable", "x@newsroom.test"],
        ["reset-password", "x@newsroom.test", "--password-stdin"],
    ):
        result = runner.invoke(main, args=["staff", *args], input=PASSWORD + "\n")
        assert result.exit_code == 2
        assert result.output.strip() == "error: no staff account has that email"


def test_staff_list_shows_role_two_factor_and_status(runner: FlaskCliRunner) -> None:
    assert runner.invoke(main, args=["staff", "list"]).output.strip() == "no staff accounts yet"
    create(runner, "ana@newsroom.test", "admin")
    create(runner, "bo@newsroom.test", "viewer")
    runner.invoke(main, args=["staff", "disable", "bo@newsroom.test"])
    lines = runner.invoke(main, args=["staff", "list"]).output.strip().splitlines()
    assert lines == [
        "ana@newsroom.test\tadmin\tno-2fa\tactive",
        "bo@newsroom.test\tviewer\tno-2fa\tdisabled",
    ]
