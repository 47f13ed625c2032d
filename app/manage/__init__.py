"""Manage my membership: a donor asks for a magic link by email (links), opens
it once into a short session, and sees their memberships and giving history
(account) and changes them (actions: recorded first, then sent to Stripe with
a key of their own row); the tables (models), forms and pages (views).

Re-exports RUNNERS, the outbox job that mails a link. No Flask, no `stripe`,
no commits here.
"""

from app.manage.links import run_manage_link
from app.outbox.runner import Runner

RUNNERS: dict[str, Runner] = {"manage_link": run_manage_link}

__all__ = ["RUNNERS"]
