"""Demo and benchmark data (`donations dev seed`): fake donors and a timeline of
payments, memberships, refunds, disputes, payouts and checkouts, posted by the
ledger's own rules so `donations ledger verify` passes. Never for production data;
no Flask outside cli (`donations dev seed`). Tests hold the exact and bulk posting
paths to identical journals."""

from app.seed.payments import processing_fee
from app.seed.people import EMAIL_DOMAIN
from app.seed.posting import Op, apply_exact, draft_entry
from app.seed.run import seed_database
from app.seed.timeline import SeedResult

__all__ = [
    "EMAIL_DOMAIN",
    "Op",
    "SeedResult",
    "apply_exact",
    "draft_entry",
    "processing_fee",
    "seed_database",
]
