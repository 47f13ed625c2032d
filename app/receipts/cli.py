"""`donations receipts annual --year YYYY`: queues each donor's statement for
the year (a job per `statement:YEAR:DONOR_ID`, so a second run queues and
sends nothing again) and sends what is due; what fails is left to the worker's
retries. Bad input is a one-line error and exit status 2.
"""

from __future__ import annotations

from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from app.cli import reporting_zone
from app.clock import utcnow
from app.db import Database
from app.outbox.mail import MailSettings
from app.outbox.runner import JobContext, JobPolicy, drain_jobs
from app.receipts.jobs import RUNNERS, queue_statement
from app.receipts.statements import FIRST_YEAR, LAST_YEAR, donors_for_year
from app.settings import ROOT


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


@click.group()
def receipts() -> None:
    """Receipts and statements to donors."""


@receipts.command("annual")
@click.option("--year", type=int, required=True, help="The year (of LEDGER_REPORTING_TZ).")
@with_appcontext
def annual(year: int) -> None:
    """Email each donor who gave in YEAR their statement, once."""
    zone = reporting_zone()
    if not FIRST_YEAR <= year <= LAST_YEAR:
        _fail(f"--year must be between {FIRST_YEAR} and {LAST_YEAR}")
    if year >= utcnow().astimezone(zone).year:
        _fail(f"{year} has not ended yet; a statement is sent once, for a whole year")
    database: Database = current_app.extensions["donations.db"]
    session = database.session()
    try:
        with session.begin():
            donors = donors_for_year(session, year, zone)
            queued = sum(queue_statement(session, year=year, donor_id=d) for d in donors)
    finally:
        session.close()
    context = JobContext(
        current_app.config,
        MailSettings.from_settings(current_app.config, ROOT),
        current_app.extensions.get("donations.payments"),
    )
    outcomes = drain_jobs(
        database, RUNNERS, context, JobPolicy.from_settings(current_app.config), kinds=["statement"]
    )
    sent = sum(1 for o in outcomes if o.status == "processed")
    failed = len(outcomes) - sent
    click.echo(
        f"statements {year}: {len(donors)} donors, {queued} newly queued, {sent} sent, "
        f"{failed} failed (the worker retries them)"
    )
