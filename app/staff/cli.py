"""`donations staff ...`: create, disable, reset the password of, and list staff
accounts from the server.

Passwords come from a hidden prompt (asked twice) or the first line of
standard input (`--password-stdin`); they are never echoed, logged or audited.
Bad input is a one-line error and exit status 2; each command commits once.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from app.extensions import db_session
from app.staff import (
    ROLES,
    StaffError,
    check_email,
    check_password_strength,
    check_role,
    create_staff,
    disable_staff,
    find_staff,
    list_staff,
    reseal_totp_secrets,
    set_password,
)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Password again", err=True
        )
    try:
        check_password_strength(password)
    except StaffError as exc:
        _fail(str(exc))
    return password


@click.group()
def staff() -> None:
    """Staff accounts for the /ledger area."""


@staff.command("create")
@click.argument("email")
@click.option(
    "--role", required=True, type=click.Choice(ROLES), help=f"One of: {', '.join(ROLES)}."
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create(email: str, role: str, password_stdin: bool) -> None:
    """Create a staff account with ROLE (viewer, finance or admin)."""
    try:
        address = check_email(email)
        check_role(role)
    except StaffError as exc:
        _fail(str(exc))
    db = db_session()
    if find_staff(db, address) is not None:
        _fail("a staff account with that email exists already")
    password = _read_password(password_stdin)
    try:
        member = create_staff(
            db,
            email=address,
            role=role,
            password=password,
            hasher=current_app.extensions["donations.password_hasher"],
        )
    except StaffError as exc:
        db.rollback()
        _fail(str(exc))
    db.commit()
    click.echo(f"created staff account {member.id} ({member.role})")


def _existing(email: str):  # type: ignore[no-untyped-def]
    try:
        address = check_email(email)
    except StaffError as exc:
        _fail(str(exc))
    member = find_staff(db_session(), address)
    if member is None:
        _fail("no staff account has that email")
    return member


@staff.command("disable")
@click.argument("email")
@with_appcontext
def disable(email: str) -> None:
    """Disable an account and end all of its sessions."""
    member = _existing(email)
    db = db_session()
    disable_staff(db, member, actor=None)
    db.commit()
    click.echo(f"disabled staff account {member.id}; its sessions were ended")


@staff.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def reset_password(email: str, password_stdin: bool) -> None:
    """Set a new password and end all of the account's sessions."""
    member = _existing(email)
    password = _read_password(password_stdin)
    db = db_session()
    set_password(
        db,
        member,
        password,
        hasher=current_app.extensions["donations.password_hasher"],
        actor=None,
        action="password_reset",
    )
    db.commit()
    click.echo(f"new password set for staff account {member.id}; its sessions were ended")


@staff.command("rotate-secrets")
@with_appcontext
def rotate_secrets() -> None:
    """Re-encrypt every stored TOTP secret under the newest DATA_ENCRYPTION_KEY
    (and encrypt any plain one from before); run after adding a key."""
    db = db_session()
    changed = reseal_totp_secrets(db, current_app.extensions["donations.secret_cipher"])
    db.commit()
    click.echo(f"re-encrypted the two-factor secrets of {changed} staff accounts")


@staff.command("list")
@with_appcontext
def list_accounts() -> None:
    """Every staff account: email, role, two-factor, status."""
    members = list_staff(db_session())
    if not members:
        click.echo("no staff accounts yet")
        return
    for member in members:
        status = "active" if member.active else "disabled"
        two_factor = "2fa" if member.has_totp else "no-2fa"
        click.echo(f"{member.email}\t{member.role}\t{two_factor}\t{status}")
