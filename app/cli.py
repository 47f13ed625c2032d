"""The `donations` command: the Flask CLI of this app plus our own groups.

Commands own their transaction (commit once) and turn bad input into a
one-line error with exit status 2.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from app import create_app
from app.migrate import upgrade


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False)
def main() -> None:
    """Donations and memberships: web app, worker and operations."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply every migration to DATABASE_URL (creates the SQLite file if needed)."""
    url = current_app.config["DATABASE_URL"]
    try:
        upgrade(url)
    except Exception as exc:  # an operator's command: one line, never a traceback
        # The first line of the error only: no URL (it may carry a password).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"migration failed: {first}") from exc
    click.echo("database is at the latest migration")


def _register_commands() -> None:
    from app.dev_cli import dev
    from app.ledger_cli import ledger
    from app.sandbox_cli import sandbox
    from app.staff_cli import staff
    from webhooks.cli import events, worker

    main.add_command(dev)
    main.add_command(ledger)
    main.add_command(events)
    main.add_command(sandbox)
    main.add_command(staff)
    main.add_command(worker)


_register_commands()
