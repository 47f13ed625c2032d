"""`donations sandbox ...`: the offline payments sandbox (no STRIPE_SECRET_KEY).

`renew` bills the next period of sandbox memberships so renewals can be tried;
`deliver` retries events the webhook endpoint has not accepted yet. Each
command commits its objects once, then delivers over HTTP (the dev server
must be running); undelivered events stay stored for the next try.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app.extensions import db_session
from app.payments import PaymentsError
from app.sandbox import DeliveryReport, SandboxPayments


@click.group()
def sandbox() -> None:
    """The offline payments sandbox (no STRIPE_SECRET_KEY)."""


def _sandbox() -> SandboxPayments:
    payments = current_app.extensions.get("donations.payments")
    if not isinstance(payments, SandboxPayments):
        raise click.UsageError(
            "the sandbox is not active (a STRIPE_SECRET_KEY is set, APP_ENV is production, "
            "or sandbox_enabled is false)"
        )
    return payments


def _deliver(payments: SandboxPayments) -> None:
    report: DeliveryReport = payments.deliver_pending()
    if report.delivered:
        click.echo(f"delivered {report.delivered} event(s) to {payments.webhook_url}")
    if not report.ok:
        click.echo(
            f"could not deliver {report.pending} event(s) to {payments.webhook_url} "
            f"({report.errors[-1]}); they are stored and will be sent on the next "
            "delivery. Is the dev server running?",
            err=True,
        )
        raise SystemExit(1)


@sandbox.command("renew")
@click.argument("subscription_id", required=False)
@click.option("--all", "renew_all", is_flag=True, help="Renew every active sandbox membership.")
@with_appcontext
def renew(subscription_id: str | None, renew_all: bool) -> None:
    """Bill the next period of a sandbox membership (SUBSCRIPTION_ID), or of
    every active one (--all), and deliver the events Stripe would send."""
    if bool(subscription_id) == renew_all:
        raise click.UsageError("give one SUBSCRIPTION_ID or --all")
    payments = _sandbox()
    session = db_session()
    ids = payments.active_subscription_ids(session) if renew_all else [str(subscription_id)]
    invoices = []
    try:
        for sub_id in ids:
            invoices.append((sub_id, payments.renew(session, sub_id)))
    except PaymentsError as exc:
        session.rollback()
        raise click.UsageError(f"{subscription_id}: {exc}") from exc
    session.commit()
    session.close()
    if not ids:
        click.echo("no active sandbox memberships")
        return
    for sub_id, invoice in invoices:
        click.echo(
            f"renewed {sub_id}: invoice {invoice['id']} paid "
            f"{invoice['amount_paid']} {invoice['currency']} (minor units)"
        )
    _deliver(payments)


@sandbox.command("deliver")
@with_appcontext
def deliver() -> None:
    """Send the sandbox events the webhook endpoint has not accepted yet."""
    payments = _sandbox()
    _deliver(payments)
    click.echo("nothing left to deliver")
