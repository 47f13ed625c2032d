"""The worker's upkeep between its batches of events (webhooks.worker): the
daily totals' roll-up every few seconds (`RollUps`, app.ledger.rollup) and,
once a day when idle, the pruning of what is kept only for a while
(`Pruning`: old magic-link requests and appeal counters). Each in a
transaction of its own, committed here; a failure is logged and left for the
next turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.appeals.counters import prune_counters
from app.clock import utcnow
from app.db import Database
from app.ledger.rollup import roll_up
from app.manage.links import prune_links

log = logging.getLogger(__name__)

# Seconds between roll-ups of the daily totals (the setting
# ledger_rollup_every_seconds), and between prunings.
ROLLUP_EVERY_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 24 * 3600.0


@dataclass
class RollUps:
    """Rolls the daily totals' open changes up (app.ledger.rollup), at most
    every `every_seconds`, in a transaction of its own; a failure is logged
    and left for the next turn (the totals stay exact meanwhile)."""

    database: Database
    every_seconds: float = ROLLUP_EVERY_SECONDS
    last: float = field(default=float("-inf"))

    def run(self, *, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - self.last < self.every_seconds:
            return 0
        self.last = now
        folded = 0
        try:
            with self.database.session() as session:
                while True:
                    moved = roll_up(session)
                    session.commit()
                    folded += moved
                    if moved < 50_000:
                        return folded
        except Exception as exc:
            log.error("worker: roll-up of the daily totals failed (%s)", type(exc).__name__)
            return folded


@dataclass
class Pruning:
    """Deletes, at most every `every_seconds` (a day) and in a transaction of
    its own, magic-link requests older than `links_keep_days` that can no
    longer be opened and appeal counters of days older than
    `counters_keep_days` (the settings manage_links_keep_days and
    appeal_counters_keep_days; 0 keeps for ever). Deleting again what another
    worker deleted is harmless. A failure is logged and left for the next turn."""

    database: Database
    links_keep_days: float = 30
    counters_keep_days: float = 730
    every_seconds: float = PRUNE_EVERY_SECONDS
    last: float = field(default=float("-inf"))

    @classmethod
    def from_settings(cls, database: Database, settings: Mapping[str, Any]) -> Pruning:
        return cls(
            database,
            links_keep_days=float(settings.get("MANAGE_LINKS_KEEP_DAYS", 30)),
            counters_keep_days=float(settings.get("APPEAL_COUNTERS_KEEP_DAYS", 730)),
        )

    def run(self, *, force: bool = False) -> dict[str, int]:
        """How many rows of each table went ({} when not due or failed)."""
        moment = time.monotonic()
        if not force and moment - self.last < self.every_seconds:
            return {}
        self.last = moment
        now = utcnow()
        pruned: dict[str, int] = {}
        try:
            with self.database.session() as session, session.begin():
                if self.links_keep_days > 0:
                    before = now - timedelta(days=self.links_keep_days)
                    pruned["manage_links"] = prune_links(session, before=before, now=now)
                if self.counters_keep_days > 0:
                    day = (now - timedelta(days=self.counters_keep_days)).date()
                    pruned["appeal_counters"] = prune_counters(session, before=day)
        except Exception as exc:
            log.error("worker: pruning failed (%s)", type(exc).__name__)
            return {}
        if any(pruned.values()):
            log.info("worker: pruned %s", ", ".join(f"{n} {t}" for t, n in pruned.items()))
        return pruned
