"""`donations stripe sync [--since DATE] [--until DATE] [--report-only] [--json]`:
pull what the ledger lacks from Stripe's lists, then print the reconcile report
(CONTRACT.md). Exit status 0 when the ledger and Stripe agree, 1 when the
report lists a difference, 2 for a usage error. Progress goes to standard
error (a live line on a terminal, plain lines otherwise); the report to
standard output.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any, NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from app.cli import DATE, day_bounds
from app.db import Database
from app.ledger import JournalEntry
from app.ledger.rollup import roll_up
from app.payments import PaymentsError
from app.reconcile.report import Report
from app.reconcile.schedule import perform
from app.reconcile.sync import PAGE_SIZE, RESOURCES, Window
from app.stripe_api import StripeApi


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


@click.group()
def stripe() -> None:
    """Stripe: sync the ledger from Stripe's lists and reconcile it."""


def _estimate(database: Database, window: Window, per_second: float, report_only: bool) -> str:
    """How long the window will take, guessed from the ledger's own entries
    in it (a first backfill has none: then only the pace is known)."""
    with database.session() as session:
        query = select(func.count(JournalEntry.id))
        if window.since is not None:
            query = query.where(JournalEntry.occurred_at >= window.since)
        if window.until is not None:
            query = query.where(JournalEntry.occurred_at < window.until)
        entries = int(session.scalar(query) or 0)
    lists = 2 if report_only else len(RESOURCES) + 1
    requests = lists + (entries * (1 if report_only else 2)) // PAGE_SIZE
    pace = (
        f"about {requests / per_second:.0f} s at {per_second:g} requests/s"
        if per_second > 0
        else "unpaced"
    )
    return (
        f"about {requests} Stripe requests for the {entries} ledger entries in this window, "
        f"{pace} (a first backfill, with no entries yet, takes longer)"
    )


def _progress() -> Any:
    live = sys.stderr.isatty()

    def show(resource: str, count: int) -> None:
        line = f"{resource}: {count} listed"
        if live:
            click.echo(f"\r{line:<60}", nl=False, err=True)
        else:
            click.echo(line, err=True)

    return show


def _print_report(report: Report, data: dict[str, Any]) -> None:
    window = data["window"]
    click.echo(f"reconcile report {window['since'] or 'beginning'} .. {window['until'] or 'now'}")
    for currency, sides in data["currencies"].items():
        s, ledger = sides["stripe"], sides["ledger"]
        click.echo(
            f"  {currency}: stripe gross {s['gross']} fees {s['fees']} net {s['net']}; "
            f"ledger gross {ledger['gross']} fees {ledger['fees']} net {ledger['net']}"
        )
    for name in ("missing_in_ledger", "unknown_to_stripe", "mismatches", "unsettled"):
        for item in data[name]:
            click.echo(
                f"  {name.replace('_', ' ')}: " + ", ".join(f"{k}={v}" for k, v in item.items())
            )
    for payout in data["payouts"]:
        verdict = (
            ("ties out" if payout["ties_out"] else "does NOT tie out")
            if payout["automatic"]
            else "manual: cannot be listed"
        )
        click.echo(
            f"  payout {payout['id']} {payout['amount']} {payout['currency']} "
            f"arriving {payout['arrival_date']}: {verdict}"
        )
    for item in data["unlisted"]:
        click.echo(f"  note: Stripe would not list {item['list']} ({item['reason']})")
    click.echo(
        "no differences" if report.differences == 0 else f"{report.differences} difference(s)"
    )


@stripe.command("sync")
@click.option("--since", type=DATE, help="First day (inclusive), YYYY-MM-DD.")
@click.option("--until", type=DATE, help="Last day (exclusive), YYYY-MM-DD.")
@click.option("--report-only", is_flag=True, help="Fetch and compare; post nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def sync(since: date | None, until: date | None, report_only: bool, as_json: bool) -> None:
    """Post what the ledger lacks from Stripe, then print the reconcile report."""
    payments = current_app.extensions.get("donations.payments")
    if not isinstance(payments, StripeApi):
        _fail("stripe sync needs STRIPE_SECRET_KEY (the offline sandbox has no Stripe lists)")
    start, end = day_bounds(since, until)
    window = Window(start, end)
    database: Database = current_app.extensions["donations.db"]
    per_second = float(current_app.config["STRIPE_SYNC_REQUESTS_PER_SECOND"])
    click.echo(_estimate(database, window, per_second, report_only), err=True)
    try:
        outcome = perform(
            database,
            payments,
            current_app.extensions["donations.webhooks"],
            window,
            report_only=report_only,
            config=current_app.config,
            progress=_progress(),
        )
    except PaymentsError as exc:
        # What was posted stays posted, and the cursors say where to go on.
        click.echo(f"error: {exc}; run the same command again to go on", err=True)
        raise click.exceptions.Exit(1) from exc
    if not report_only:
        _fold_totals(database)
    if sys.stderr.isatty():
        click.echo("", err=True)
    report, data = outcome.report, outcome.data
    click.echo(f"{outcome.calls} Stripe requests", err=True)
    if as_json:
        click.echo(json.dumps(data))
    else:
        _print_report(report, data)
    if report.differences:
        raise click.exceptions.Exit(1)


ROLLUP_BATCH = 50_000


def _fold_totals(database: Database) -> None:
    """What the sync posted waits as open changes of the daily totals until a
    worker's next roll-up (readers are exact either way, but read more rows):
    fold it now, in batches, each committed."""
    with database.session() as session:
        while roll_up(session, limit=ROLLUP_BATCH) == ROLLUP_BATCH:
            session.commit()
        session.commit()
