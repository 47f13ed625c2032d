"""GET /metrics for Prometheus (loopback only, or anyone with the configured
bearer token), and the hooks every request passes: its request id (taken
from X-Request-Id or made, echoed in the response) and its latency, counted
per endpoint.

Never labels a metric with a URL or a value; never logs a query string.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request

from app.clock import utcnow
from app.extensions import database
from app.observe.logs import REQUEST_ID, request_id_from
from app.observe.metrics import CONTENT_TYPE, REQUEST_SECONDS, exposition

bp = Blueprint("observe", __name__)

LOOPBACK = frozenset({"127.0.0.1", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-Ip", "Forwarded")


def metrics_allowed() -> bool:
    """With a METRICS_TOKEN, exactly its bearer; without, a direct loopback
    client only (a request a proxy forwarded is refused: it came from afar)."""
    token = str(current_app.config.get("METRICS_TOKEN") or "")
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    return (request.environ.get("REMOTE_ADDR") or "") in LOOPBACK


@bp.get("/metrics")
def metrics() -> Response:
    if not metrics_allowed():
        abort(404)  # the operator's page does not announce itself
    session = database().session(immediate=False)
    try:
        body = exposition(session, utcnow())
    finally:
        session.close()
    return Response(body, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


# Each hook looks `g` and the request up once (`_get_current_object`): every
# attribute read through Flask's proxies is a context look-up of its own.


def start_request() -> None:
    here = g._get_current_object()  # type: ignore[attr-defined]
    here.request_started = time.perf_counter()
    # request.headers.get("X-Request-Id"), read as WSGI gives it (as webhooks.wsgi reads it)
    given = request.environ.get("HTTP_X_REQUEST_ID")
    here.request_id = request_id = request_id_from(given)
    here.request_id_token = REQUEST_ID.set(request_id)


def finish_request(response: Response) -> Response:
    here = g._get_current_object()  # type: ignore[attr-defined]
    response.headers["X-Request-Id"] = here.get("request_id") or request_id_from(None)
    started = here.get("request_started")
    if started is not None:
        asked = request._get_current_object()  # type: ignore[attr-defined]
        latency_of(asked.endpoint or "unmatched", asked.method, response.status_code).observe(
            time.perf_counter() - started
        )
    return response


_LATENCIES: dict[tuple[str, str, int], Any] = {}  # grows as prometheus-client's own children do
LATENCIES_KEPT = 4096


def latency_of(endpoint: str, method: str, status: int) -> Any:
    """REQUEST_SECONDS' child for these labels, kept here once looked up:
    prometheus-client checks and converts the labels and takes a lock on
    every `labels()` (profiled: a hundredth of a GET /donate). The child is
    the one `labels()` returns, so what it counts is the same."""
    key = (endpoint, method, status)
    child = _LATENCIES.get(key)
    if child is None:
        child = REQUEST_SECONDS.labels(endpoint, method, str(status))
        if len(_LATENCIES) < LATENCIES_KEPT:  # a flood of odd methods is not kept
            _LATENCIES[key] = child
    return child


def forget_request(_exc: BaseException | None = None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


def init_app(app: Flask) -> None:
    """Before every other hook: the id and the clock start first and the
    latency is taken last (after_request runs in reverse order)."""
    app.before_request(start_request)
    app.after_request(finish_request)
    app.teardown_request(forget_request)
    app.register_blueprint(bp)
