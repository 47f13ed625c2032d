"""The campaign report: per (campaign, utm_source), the ledger's figures per
currency and the Checkout Sessions created, completed and expired, with a
subtotal per campaign (per currency: never added across currencies). Reads
only: never writes or commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app import ledger
from app.donate.models import Checkout
from app.finance.reports.totals import Figures, figures_of, grouped_figures


@dataclass
class CampaignLine:
    campaign: str | None
    utm_source: str | None
    figures: dict[str, Figures] = field(default_factory=dict)
    created: int = 0
    completed: int = 0
    expired: int = 0

    @property
    def conversion_basis_points(self) -> int | None:
        if not self.created:
            return None
        return (20_000 * self.completed + self.created) // (2 * self.created)


def campaign_report(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[CampaignLine]:
    """Per (campaign, utm_source): the ledger's figures per currency, and the
    Checkout Sessions created, completed and expired (the `checkouts` table,
    by their creation time) in the same range."""
    lines: dict[tuple[str | None, str | None], CampaignLine] = {}

    def line(campaign: str | None, source: str | None) -> CampaignLine:
        key = (campaign, source)
        if key not in lines:
            lines[key] = CampaignLine(campaign, source)
        return lines[key]

    rows = ledger.rows_query(since, until).subquery("r")
    grouped: dict[tuple[str | None, str | None], list[Any]] = defaultdict(list)
    for campaign, source, currency, kind, amount, fee, n in session.execute(
        grouped_figures(rows, rows.c.campaign, rows.c.utm_source).where(
            rows.c.kind.in_(
                (*ledger.PAYMENT_KINDS, "refund", "refund_failure", "dispute", "dispute_reversal")
            )
        )
    ):
        grouped[(campaign, source)].append((currency, kind, amount, fee, n))
    for (campaign, source), groups in grouped.items():
        line(campaign, source).figures = figures_of(groups)

    completed = func.sum(case((Checkout.status == "complete", 1), else_=0))
    expired = func.sum(case((Checkout.status == "expired", 1), else_=0))
    query = select(
        Checkout.campaign, Checkout.utm_source, func.count(), completed, expired
    ).group_by(Checkout.campaign, Checkout.utm_source)
    if since is not None:
        query = query.where(Checkout.created_at >= since)
    if until is not None:
        query = query.where(Checkout.created_at < until)
    for campaign, source, n, done, gone in session.execute(query):
        found = line(campaign, source)
        found.created, found.completed, found.expired = int(n), int(done or 0), int(gone or 0)
    return sorted(
        lines.values(),
        key=lambda x: (
            x.campaign is None,
            x.campaign or "",
            x.utm_source is None,
            x.utm_source or "",
        ),
    )


@dataclass
class CampaignGroup:
    """A campaign's lines (one per utm_source) and their subtotal."""

    campaign: str | None
    lines: list[CampaignLine]
    subtotal: CampaignLine


def campaign_groups(lines: list[CampaignLine]) -> list[CampaignGroup]:
    """The report's lines grouped by campaign, in order, each with the sum of
    its lines per currency and of its checkouts (from the few report lines,
    not from the ledger)."""
    groups: list[CampaignGroup] = []
    for line in lines:
        if not groups or groups[-1].campaign != line.campaign:
            groups.append(CampaignGroup(line.campaign, [], CampaignLine(line.campaign, None)))
        group = groups[-1]
        group.lines.append(line)
        total = group.subtotal
        for currency, figures in line.figures.items():
            into = total.figures.setdefault(currency, Figures())
            for name in ("gross", "fees", "refunds", "disputes", "other", "payouts", "payments"):
                setattr(into, name, getattr(into, name) + getattr(figures, name))
        total.figures = dict(sorted(total.figures.items()))
        total.created += line.created
        total.completed += line.completed
        total.expired += line.expired
    return groups
