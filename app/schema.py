"""Every table of the application in one place, for Alembic and the tests:
importing this module registers all models on `Base.metadata`.

Add a module here when it defines tables. No Flask, no `stripe`.
"""

from __future__ import annotations

import app.appeals.models
import app.donate.models
import app.donors
import app.finance.reports  # indexes the finance views need (migration 0006)
import app.ledger
import app.ledger.records
import app.manage.models
import app.outbox.models
import app.reconcile.models
import app.sandbox.models
import app.staff
from app.db import Base
from webhooks.inbox import StripeEvent  # the inbox's table

metadata = Base.metadata

__all__ = ["StripeEvent", "app", "metadata"]
