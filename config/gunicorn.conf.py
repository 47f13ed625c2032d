"""gunicorn's settings for production: `gunicorn -c config/gunicorn.conf.py "app:create_app()"`.

Every value can be set from the environment (WEB_BIND or PORT, WEB_WORKERS,
WEB_WORKER_CLASS, WEB_THREADS, WEB_TIMEOUT). The access log names the path only, never the query
string: a donor search (`/ledger/donors?q=...`) or a thank-you link must not put
an email or a session id into the log.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

bind = (
    os.environ.get("WEB_BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
)
# Threaded workers, one per core with 8 threads each, by measurement
# (bench/web.py, bench/README.md "The web stack"). A stored webhook waits for
# PostgreSQL's commit, and threads let those waits overlap where a sync worker
# idles through each; GET /donate never waits, so for it the choice hardly
# matters. Measured 2026-12-01 on 2 cores under a load of 8-12 from other
# suites (one or two 4-5 s runs each, so only the large differences count),
# webhooks / pages per second and the server's CPU per webhook:
#   gthread 2 x 8: 622 / 597, 1.35 ms (and 365 / 640 in a second sweep)
#   gthread 2 x 4: 525 / 638, 1.45 ms
#   gthread 2 x 2: 429 / 1,209, 1.58 ms (178 / 754 in the second sweep)
#   gthread 2 x 1: 206 / 708;  sync x 2: 325 / 832;  gthread 1 x 8: 457 / 561
#   gthread 4 x 4: 504 / 650, 1.48 ms;  gthread 2 x 16: 687 / 1,474, but 2 in 100
#   webhooks opened a connection (threads beyond the pool below)
# None is clearly better than 2 x 8 at this load; a quiet run may tell 4 x 4 apart.
# The database pool for the webhook route holds 8 connections per worker
# (app.db.SINGLE_STATEMENT_POOL, plus as many again opened and closed when busy):
# more threads than that make connections churn. (Since the webhook route's group
# commit, webhooks/group_commit.py, its deliveries share one statement at a time per
# worker, so they hold one of those connections; checkout's statements use the rest.
# The figures above predate it. Measured again 2026-12-01 22:00 UTC at a load of
# 7.5-8.7, three runs each: 2 x 16 served the webhooks as 2 x 8 did, 1,536-1,808
# against 1,653-1,790/s for the same CPU per event, and only slowed the bare
# reference; see bench/README.md "The webhook route a third time".)
workers = int(os.environ.get("WEB_WORKERS") or multiprocessing.cpu_count())
worker_class = os.environ.get("WEB_WORKER_CLASS") or "gthread"
threads = int(os.environ.get("WEB_THREADS") or 8)
timeout = int(os.environ.get("WEB_TIMEOUT") or 30)
graceful_timeout = 20
keepalive = 5
# Each worker builds its own app (and database pool) after the fork.
preload_app = False

accesslog = "-"
errorlog = "-"
# %(U)s is the path without its query string; no referer (it can carry one).
access_log_format = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" %({x-request-id}o)s'
)

# Prometheus metrics from every worker (prometheus-client's multiprocess mode):
# each worker writes its counters to files in this folder, and /metrics adds
# them up. Set before any worker imports prometheus_client; emptied at start.
metrics_dir = Path(
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        str(Path(tempfile.gettempdir()) / f"donations-metrics-{os.getpid()}"),
    )
)


def on_starting(server: Any) -> None:
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    shutil.rmtree(metrics_dir, ignore_errors=True)
