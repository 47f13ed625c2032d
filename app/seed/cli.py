"""`donations dev ...`: tools for demos and benchmarks, never for production
data. `dev seed` fills the database with fake donors and their money through
the ledger's posting rules (app.seed); it refuses to run in production."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app.db import Database
from app.seed import seed_database


@click.group()
def dev() -> None:
    """Development tools: demo data."""


@dev.command("seed")
@click.option(
    "--payments", type=click.IntRange(min=1), required=True, help="Successful payments to create."
)
@click.option("--seed", "seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option(
    "--months",
    type=click.IntRange(min=1, max=120),
    default=24,
    show_default=True,
    help="Spread the payments over this many months up to now.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Commit every this many payments.",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Post every entry through the ledger's per-entry functions (slower).",
)
@with_appcontext
def seed(payments: int, seed: int, months: int, batch: int, exact: bool) -> None:
    """Fill the database with realistic fake donors (example.org), one-time
    gifts, memberships and renewals, refunds, disputes, payouts and
    checkouts, across usd, eur, gbp and jpy. Deterministic for a --seed."""
    if current_app.config.get("APP_ENV") == "production":
        click.echo("error: dev seed never runs with APP_ENV=production", err=True)
        raise click.exceptions.Exit(2)
    database: Database = current_app.extensions["donations.db"]
    session = database.session()
    try:
        result = seed_database(
            session,
            payments=payments,
            seed=seed,
            months=months,
            batch=batch,
            exact=exact,
            progress=lambda line: click.echo(line, err=True),
        )
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    click.echo(
        f"seeded {result.payments:,} payments ({result.by_kind.get('donation', 0):,} one-time, "
        f"{result.by_kind.get('membership_payment', 0):,} membership), {result.donors:,} donors, "
        f"{result.memberships:,} memberships, {result.refunds:,} refunds, "
        f"{result.disputes:,} disputes, {result.payouts:,} payouts, "
        f"{result.checkouts:,} checkouts; {result.entries:,} journal entries "
        f"in {result.seconds:,.1f} s"
    )
