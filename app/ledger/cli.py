"""`donations ledger ...`: export, summary, verify, and rebuild-totals (see
CONTRACT.md).

No command here writes to the journal; rebuild-totals rewrites the daily
totals derived from it (app.ledger.totals). Dates are days in
LEDGER_REPORTING_TZ; --since is inclusive, --until exclusive.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from app import ledger as core
from app.cli import DATE, day_bounds
from app.db import Database
from app.ledger import export as ledger_export
from app.ledger import totals as ledger_totals


def _session() -> Any:
    database: Database = current_app.extensions["donations.db"]
    return database.session()


@click.group()
def ledger() -> None:
    """The donor ledger: export, summary, verify, rebuild-totals."""


@ledger.command("export")
@click.option("--since", type=DATE, help="First day (inclusive), YYYY-MM-DD.")
@click.option("--until", type=DATE, help="Last day (exclusive), YYYY-MM-DD.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write to FILE.")
@with_appcontext
def export(since: date | None, until: date | None, output: str | None) -> None:
    """The ledger CSV, one row per movement, oldest first (no byte-order mark)."""
    start, end = day_bounds(since, until)
    session = _session()
    try:
        if output:
            with open(output, "wb") as handle:
                ledger_export.write_csv(session, handle, since=start, until=end)
        else:
            sys.stdout.flush()
            ledger_export.write_csv(session, sys.stdout.buffer, since=start, until=end)
            sys.stdout.buffer.flush()
    finally:
        session.close()


@ledger.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON.")
@click.option("--since", type=DATE, help="First day (inclusive), YYYY-MM-DD.")
@click.option("--until", type=DATE, help="Last day (exclusive), YYYY-MM-DD.")
@with_appcontext
def summary(as_json: bool, since: date | None, until: date | None) -> None:
    """Totals per currency: a table, or with --json the JSON of CONTRACT.md
    ("Ledger summary JSON")."""
    start, end = day_bounds(since, until)
    session = _session()
    try:
        found = core.summary(session, start, end)
    finally:
        session.close()
    if as_json:
        click.echo(json.dumps(found, sort_keys=False))
        return
    for line in summary_table(found):
        click.echo(line)


def summary_table(found: dict[str, Any]) -> list[str]:
    """The summary as aligned text: a row per currency, then the counts."""
    currencies: dict[str, dict[str, Any]] = found["currencies"]
    if not currencies:
        rows = []
    else:
        names = list(next(iter(currencies.values())))
        rows = [["currency", *names]] + [
            [currency, *(str(figures[name]) for name in names)]
            for currency, figures in currencies.items()
        ]
    lines = []
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
    else:
        lines.append("no movements in this period")
    lines.append(f"donors: {found['donors']}")
    lines.append(f"active memberships: {found['active_memberships']}")
    return lines


@ledger.command("rebuild-totals")
@with_appcontext
def rebuild_totals() -> None:
    """Recompute the daily totals (derived data behind the dashboard and the
    journal's totals) from the journal, in one transaction."""
    session = _session()
    try:
        groups = ledger_totals.rebuild(session)
        session.commit()
    finally:
        session.close()
    click.echo(f"daily totals rebuilt from the journal: {groups} groups")


@ledger.command("verify")
@with_appcontext
def verify() -> None:
    """Check the ledger: entries balance, no orphan postings, receivables
    settle, the summary equals the postings. Exit status 1 on a problem."""
    session = _session()
    try:
        problems = core.verify(session)
    finally:
        session.close()
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ledger verified: every entry balances")
