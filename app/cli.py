"""The `donations` command: the Flask CLI of this app plus each feature's
command group (its package's `cli.py`), loaded when first named, so nothing
runs at import time and `donations --help` stays quick. Also what every group
shares: the DATE parameter (a day in LEDGER_REPORTING_TZ) and its bounds.

Commands own their transaction (commit once). Every mistake (a bad date, a
missing argument, an unknown option or command) and every configuration
error at start (app.settings.ConfigError) is one line, `error: <message>`
naming the option or setting, with exit status 2: no usage block, no traceback.
"""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, date, datetime, time
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from app import create_app
from app.migrate import upgrade
from app.settings import ConfigError

# Each feature's command group, as "module:attribute".
GROUPS = {
    "dev": "app.seed.cli:dev",
    "events": "webhooks.cli:events",
    "jobs": "webhooks.cli:jobs",
    "ledger": "app.ledger.cli:ledger",
    "receipts": "app.receipts.cli:receipts",
    "sandbox": "app.sandbox.cli:sandbox",
    "staff": "app.staff.cli:staff",
    "stripe": "app.reconcile.cli:stripe",
    "worker": "webhooks.cli:worker",
}


def fail(message: str, status: int = 2) -> NoReturn:
    """A one-line error on standard error, then exit (2: the caller's mistake)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


class DonationsGroup(FlaskGroup):
    """Flask's group, plus the feature groups above, imported on demand; its
    errors are one line each (see the module's opening comment)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # The commands are known without loading the app, so `--help` works
        # (and stays quick) even when the configuration is broken.
        return sorted(set(click.Group.list_commands(self, ctx)) | set(GROUPS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = GROUPS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as exc:
            fail(exc.format_message())
        except ConfigError as exc:
            fail(str(exc))
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=DonationsGroup, create_app=create_app, add_version_option=False)
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


# -- what the groups share -----------------------------------------------------


class DateParam(click.ParamType):
    """A YYYY-MM-DD day; bad input is a one-line usage error (exit status 2)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value)
        try:
            if len(text) != 10:
                raise ValueError(text)
            return date.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date in the form YYYY-MM-DD", param, ctx)


DATE = DateParam()


def reporting_zone() -> ZoneInfo:
    """LEDGER_REPORTING_TZ, in which CLI dates are days."""
    name = current_app.config.get("LEDGER_REPORTING_TZ") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.UsageError(f"LEDGER_REPORTING_TZ {name!r} is not a time zone") from exc


def day_bounds(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """--since (inclusive) and --until (exclusive) as UTC instants: the start
    of each day in the reporting zone."""
    zone = reporting_zone()
    if since and until and until <= since:
        raise click.BadParameter("must be after --since", param_hint="'--until'")

    def start(day: date | None) -> datetime | None:
        if day is None:
            return None
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    return start(since), start(until)
