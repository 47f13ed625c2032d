"""A small stateful stand-in for Stripe's list and retrieve endpoints, served
through `responses` (Stripe is stubbed at HTTP, never our code): objects are
kept newest first, as Stripe lists them, and filtered by `created[gte|lt]`,
`starting_after`, `limit`, `payout` (balance transactions), `charge`
(refunds) and `payment[payment_intent]` (invoice payments). `fail_after`
makes every call after the Nth answer 500, to stop a sync half way; `delay`
slows every answer. `served` puts the same fake on a loopback port, for a
real `donations` process to call."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses

API = "https://api.stripe.com/v1"
RESOURCES = (
    "balance_transactions",
    "charges",
    "customers",
    "disputes",
    "invoice_payments",
    "invoices",
    "payouts",
    "refunds",
    "subscriptions",
)


class FakeStripeLists:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.in_payout: dict[str, list[str]] = defaultdict(list)  # po_ -> txn ids
        self.calls: list[str] = []
        self.fail_after: int | None = None
        self.rate_limited = 0  # answer this many calls 429 first
        self.delay = 0.0  # seconds before every answer

    def add(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[resource].append(obj)
        self.objects[resource].sort(key=lambda o: (o.get("created", 0), o["id"]), reverse=True)
        return obj

    def find(self, object_id: str) -> dict[str, Any] | None:
        for items in self.objects.values():
            for obj in items:
                if obj["id"] == object_id:
                    return obj
        return None

    def install(self, mock: responses.RequestsMock) -> None:
        pattern = re.compile(rf"{re.escape(API)}/({'|'.join(RESOURCES)})(/[^/?]+)?(\?.*)?$")
        mock.add_callback(responses.GET, pattern, callback=self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        url = urlparse(request.url)
        if self.delay:
            time.sleep(self.delay)
        self.calls.append(url.path + ("?" + url.query if url.query else ""))
        if self.rate_limited:
            self.rate_limited -= 1
            return 429, {}, json.dumps({"error": {"type": "rate_limit_error", "message": "slow"}})
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            return 500, {}, json.dumps({"error": {"type": "api_error", "message": "down"}})
        parts = url.path.removeprefix("/v1/").split("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if len(parts) == 2:
            found = self.find(parts[1])
            if found is None:
                return (
                    404,
                    {},
                    json.dumps(
                        {"error": {"type": "invalid_request_error", "message": "No such object"}}
                    ),
                )
            return 200, {}, json.dumps(found)
        items = list(self.objects[parts[0]])
        if "created[gte]" in query:
            items = [o for o in items if o["created"] >= int(query["created[gte]"])]
        if "created[lt]" in query:
            items = [o for o in items if o["created"] < int(query["created[lt]"])]
        if "payout" in query:
            wanted = set(self.in_payout[query["payout"]])
            items = [o for o in items if o["id"] in wanted]
        if "charge" in query:
            items = [o for o in items if o.get("charge") == query["charge"]]
        if "payment[payment_intent]" in query:
            items = [
                o
                for o in items
                if (o.get("payment") or {}).get("payment_intent")
                == query["payment[payment_intent]"]
            ]
        if "starting_after" in query:
            ids = [o["id"] for o in items]
            start = ids.index(query["starting_after"]) + 1 if query["starting_after"] in ids else 0
            items = items[start:]
        limit = int(query.get("limit", "10"))
        page = items[:limit]
        body = {"object": "list", "data": page, "has_more": len(items) > limit, "url": url.path}
        return 200, {}, json.dumps(body)


@contextmanager
def served(fake: FakeStripeLists) -> Iterator[str]:
    """The fake on 127.0.0.1 (keep-alive, as Stripe): yields the base URL to
    give a `donations` process as STRIPE_API_BASE."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            status, _headers, body = fake.answer(
                SimpleNamespace(url=API.removesuffix("/v1") + self.path)
            )
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
