"""The service's Prometheus metrics: counters and the request-latency
histogram kept per process (in prometheus-client's multiprocess files when
PROMETHEUS_MULTIPROC_DIR is set, as gunicorn.conf.py does), and the queue
gauges read from the database at scrape time, so every host agrees.

Imports no Flask; labels are endpoint names, outcomes and kinds, never a URL or a value.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session

# Metrics of this process; in multiprocess mode their values live in files.
REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_DELIVERIES = Counter(
    "donations_webhook_deliveries",
    "Webhook deliveries received, by outcome (stored, duplicate, skipped, refused).",
    ["outcome"],
    registry=REGISTRY,
)
CHECKOUT_ERRORS = Counter(
    "donations_checkout_errors",
    "POST /donate answers where Stripe failed, by kind (rate_limited, unavailable, ...).",
    ["kind"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "donations_http_request_duration_seconds",
    "Time to answer a request, by endpoint (route name, never the URL) and method.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

EVENT_STATUSES = ("pending", "processed", "failed", "dead", "skipped")
JOB_STATUSES = ("pending", "failed", "done", "dead")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QueueCollector(Collector):
    """The inbox and the outbox as the database sees them, at scrape time."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    def collect(self) -> list[GaugeMetricFamily]:  # type: ignore[override]
        events = GaugeMetricFamily(
            "donations_webhook_events",
            "Stored webhook events by status (processed = applied to the ledger).",
            labels=["status"],
        )
        counts = dict(
            self.session.execute(
                text("SELECT status, count(*) FROM stripe_events GROUP BY status")
            ).all()
        )
        for status in EVENT_STATUSES:
            events.add_metric([status], float(counts.get(status, 0)))
        lag = GaugeMetricFamily(
            "donations_inbox_lag_seconds",
            "Age of the oldest event waiting to be applied (0 when none waits).",
        )
        oldest = self.session.execute(
            text("SELECT min(received_at) FROM stripe_events WHERE status IN ('pending', 'failed')")
        ).scalar()
        lag.add_metric([], max(0.0, (self.now - _aware(oldest)).total_seconds()) if oldest else 0.0)
        jobs = GaugeMetricFamily(
            "donations_outbox_jobs", "Outbox jobs by status.", labels=["status"]
        )
        job_counts = dict(
            self.session.execute(
                text("SELECT status, count(*) FROM outbox_jobs GROUP BY status")
            ).all()
        )
        for status in JOB_STATUSES:
            jobs.add_metric([status], float(job_counts.get(status, 0)))
        backlog = GaugeMetricFamily(
            "donations_outbox_backlog",
            "Outbox jobs still to run (pending or failed and due for a retry).",
        )
        backlog.add_metric([], float(job_counts.get("pending", 0) + job_counts.get("failed", 0)))
        return [events, lag, jobs, backlog]


def _aware(value: datetime | str) -> datetime:
    """SQLite hands back text or a naive datetime through text(); both are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def exposition(session: Session, now: datetime) -> bytes:
    """The text format for one scrape: every process's metrics and the queues."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(ProcessMetrics())
    registry.register(QueueCollector(session, now))
    return generate_latest(registry)


class ProcessMetrics(Collector):
    """This process's own metrics, outside multiprocess mode."""

    def collect(self) -> Any:
        return REGISTRY.collect()
