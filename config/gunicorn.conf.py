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
# Threaded workers, one per core with 8 threads each, by measurement (bench/web.py,
# README "Speed"): a stored webhook spends most of its time waiting for
# PostgreSQL's commit to reach the disk, and threads let those waits overlap
# (and share one flush), where a sync worker idles through each. On 2 cores,
# same run: gthread 2 x 8 acknowledged 269 events/s and served 664 pages/s;
# sync x 2, 138 and 497; sync x 5, 115 and 410.
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
