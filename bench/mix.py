"""A realistic mix of stored events for the worker benchmark, and a loopback
stand-in for Stripe's read API that answers them at once and counts every
request (bench/worker.py). Per ten readers: six one-time gifts through our
form (checkout.session.completed, payment_intent.succeeded, charge.succeeded,
charge.updated bringing the balance transaction), two new memberships and
two renewals (subscription, invoice, invoice payment, intent, charge and its
balance transaction) and one refund. Objects are built on Stripe's own
examples (tests/fixtures/stripe_fixtures3.json, read as data). Loopback only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "stripe_fixtures3.json"
API_VERSION = "2026-10-28.endive"
DAY = 86_400


def _resources() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return found


@dataclass
class Mix:
    """Events in the order Stripe sends them, and what the API answers."""

    events: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)  # path or list key -> JSON
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)  # the gifts', by tag
    payments: int = 0

    def add(self, event_type: str, obj: dict[str, Any], created: int, **extra: Any) -> None:
        self.events.append(
            {
                "id": f"evt_mix_{len(self.events)}",
                "object": "event",
                "api_version": API_VERSION,
                "created": created,
                "data": {"object": obj, **extra},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )


def _fee(amount: int) -> int:
    return (amount * 29 + 500) // 1000 + 30


class Builder:
    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        self.r = _resources()

    def txn(self, txn_id: str, amount: int, source: str, created: int, **more: Any) -> None:
        fee = _fee(amount) if amount > 0 else 0
        self.mix.objects[f"/v1/balance_transactions/{txn_id}"] = {
            **self.r["balance_transaction"],
            "id": txn_id,
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": "usd",
            "source": source,
            "created": created,
            "available_on": created + 2 * DAY,
            "type": "charge",
            "reporting_category": "charge",
            "exchange_rate": None,
            "status": "available",
            "fee_details": [],
            **more,
        }

    def charge(self, ch: str, pi: str, amount: int, created: int, **more: Any) -> dict[str, Any]:
        obj = {
            **self.r["charge"],
            "id": ch,
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": True,
            "paid": True,
            "refunded": False,
            "disputed": False,
            "created": created,
            "currency": "usd",
            "payment_intent": pi,
            "balance_transaction": None,
            "status": "succeeded",
            "description": None,
            "metadata": {},
            **more,
        }
        obj.pop("refunds", None)
        obj.pop("invoice", None)
        return obj

    def intent(self, pi: str, ch: str, amount: int, created: int, **more: Any) -> dict[str, Any]:
        return {
            "id": pi,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": "usd",
            "created": created,
            "latest_charge": ch,
            "livemode": False,
            "metadata": {},
            "status": "succeeded",
            "receipt_email": None,
            "capture_method": "automatic_async",
            **more,
        }

    def one_time(self, tag: str, amount: int, at: int) -> None:
        ch, pi, txn, cus = f"ch_{tag}", f"pi_{tag}", f"txn_{tag}", f"cus_{tag}"
        email = f"{tag}@example.org"
        meta = {"checkout_id": f"co_{tag}", "frequency": "once"}
        self.txn(txn, amount, ch, at + 10)
        self.mix.add(
            "checkout.session.completed",
            {
                "id": f"cs_{tag}",
                "object": "checkout.session",
                "client_reference_id": f"co_{tag}",
                "metadata": meta,
                "mode": "payment",
                "created": at,
                "customer": cus,
                "customer_details": {"email": email, "name": None},
                "amount_total": amount,
                "currency": "usd",
                "payment_intent": pi,
                "subscription": None,
                "invoice": None,
                "status": "complete",
                "payment_status": "paid",
                "livemode": False,
            },
            at + 12,
        )
        self.mix.add(
            "payment_intent.succeeded",
            self.intent(pi, ch, amount, at + 5, customer=cus, metadata=meta),
            at + 11,
        )
        charge = self.charge(ch, pi, amount, at + 10, customer=cus, metadata=meta)
        charge["billing_details"] = {
            **charge["billing_details"],
            "email": email,
            "name": "Bench Reader",
        }
        charge["receipt_email"] = email
        self.mix.add("charge.succeeded", charge, at + 11)
        self.mix.add(
            "charge.updated",
            {**charge, "balance_transaction": txn},
            at + 40,
            previous_attributes={"balance_transaction": None},
        )
        self.mix.charges[tag] = {**charge, "balance_transaction": txn}
        self.mix.payments += 1

    def membership(self, tag: str, amount: int, at: int, *, renewal: bool) -> None:
        """A membership's first payment (with its subscription and checkout)
        or a renewal of one signed up a month before."""
        sub, cus, email = f"sub_{tag}", f"cus_{tag}", f"{tag}@example.org"
        meta = {"checkout_id": f"co_{tag}", "frequency": "month"}
        n = 1 if renewal else 0
        inv, pi, ch, txn = f"in_{tag}_{n}", f"pi_{tag}_{n}", f"ch_{tag}_{n}", f"txn_{tag}_{n}"
        start = at - 30 * DAY if renewal else at

        def subscription(status: str, period_end: int) -> dict[str, Any]:
            price = {
                "id": f"price_{sub}",
                "object": "price",
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": "month", "interval_count": 1},
                "product": "prod_membership",
            }
            item = {
                "id": f"si_{sub}",
                "object": "subscription_item",
                "price": price,
                "quantity": 1,
                "current_period_end": period_end,
                "current_period_start": period_end - 30 * DAY,
            }
            return {
                "id": sub,
                "object": "subscription",
                "customer": cus,
                "created": start,
                "status": status,
                "currency": "usd",
                "cancel_at_period_end": False,
                "canceled_at": None,
                "ended_at": None,
                "livemode": False,
                "metadata": meta,
                "items": {"object": "list", "data": [item], "has_more": False},
            }

        invoice = {
            "id": inv,
            "object": "invoice",
            "customer": cus,
            "customer_email": email,
            "customer_name": None,
            "created": at + 2,
            "currency": "usd",
            "amount_due": amount,
            "amount_paid": amount,
            "amount_remaining": 0,
            "status": "paid",
            "billing_reason": "subscription_cycle" if renewal else "subscription_create",
            "livemode": False,
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"subscription": sub, "metadata": meta},
            },
        }
        invoice_payment = {
            **self.r["invoice_payment"],
            "id": f"inpay_{tag}_{n}",
            "invoice": inv,
            "amount_paid": amount,
            "amount_requested": amount,
            "created": at + 2,
            "currency": "usd",
            "livemode": False,
            "status": "paid",
            "payment": {"type": "payment_intent", "payment_intent": pi},
            "status_transitions": {"canceled_at": None, "paid_at": at + 2},
        }
        self.txn(txn, amount, ch, at + 3)
        self.mix.objects[f"/v1/invoices/{inv}"] = invoice
        self.mix.objects[f"invoice_payments:{pi}"] = [{**invoice_payment, "invoice": invoice}]
        self.mix.objects[f"/v1/customers/{cus}"] = {
            "id": cus,
            "object": "customer",
            "email": email,
            "name": "Member Reader",
        }
        if not renewal:
            self.mix.add(
                "customer.subscription.created",
                subscription("incomplete", at + 30 * DAY),
                at + 1,
            )
            self.mix.add(
                "checkout.session.completed",
                {
                    "id": f"cs_{tag}",
                    "object": "checkout.session",
                    "client_reference_id": f"co_{tag}",
                    "metadata": meta,
                    "mode": "subscription",
                    "created": at,
                    "customer": cus,
                    "customer_details": {"email": email, "name": None},
                    "amount_total": amount,
                    "currency": "usd",
                    "payment_intent": None,
                    "subscription": sub,
                    "invoice": None,
                    "status": "complete",
                    "payment_status": "paid",
                    "livemode": False,
                },
                at + 6,
            )
        charge = self.charge(ch, pi, amount, at + 3, customer=cus)
        if not renewal:
            charge["billing_details"] = {**charge["billing_details"], "email": email}
        self.mix.add("charge.succeeded", charge, at + 4)
        self.mix.add(
            "payment_intent.succeeded", self.intent(pi, ch, amount, at + 2, customer=cus), at + 4
        )
        self.mix.add("invoice_payment.paid", invoice_payment, at + 5)
        self.mix.add("invoice.paid", invoice, at + 5)
        self.mix.add("invoice.payment_succeeded", invoice, at + 5)
        self.mix.add(
            "charge.updated",
            {**charge, "balance_transaction": txn},
            at + 60,
            previous_attributes={"balance_transaction": None},
        )
        self.mix.add(
            "customer.subscription.updated",
            subscription("active", at + 30 * DAY),
            at + 7,
            previous_attributes={"status": "incomplete"} if not renewal else {"items": {}},
        )
        self.mix.payments += 1

    def refund(self, tag: str, amount: int, at: int) -> None:
        """A partial refund of the one-time gift `tag`: refund.created (its
        balance transaction fetched once) and charge.refunded, in the same
        second."""
        ch, pi, re_id, txn = f"ch_{tag}", f"pi_{tag}", f"re_{tag}", f"txn_re_{tag}"
        self.txn(txn, -amount, re_id, at, type="refund", reporting_category="refund")
        refund = {
            **self.r["refund"],
            "id": re_id,
            "charge": ch,
            "amount": amount,
            "created": at,
            "currency": "usd",
            "balance_transaction": txn,
            "status": "succeeded",
            "payment_intent": pi,
            "reason": "requested_by_customer",
            "failure_balance_transaction": None,
        }
        self.mix.objects[f"refunds:{ch}"] = [refund]
        self.mix.add("refund.created", refund, at + 1)
        charge = {**self.mix.charges[tag], "amount_refunded": amount}
        self.mix.add("charge.refunded", charge, at + 1, previous_attributes={"amount_refunded": 0})


def realistic_mix(readers: int, *, start: int, days: int) -> Mix:
    """The events of `readers` readers over `days` days (see the module)."""
    mix = Mix()
    builder = Builder(mix)
    for n in range(readers):
        at = start + (n * days * DAY) // max(1, readers)
        amount = 500 + (n * 7919) % 20000
        slot = n % 10
        if slot < 6:
            builder.one_time(f"mix{n}", amount, at)
            if slot == 0:
                builder.refund(f"mix{n}", amount // 4, at + 3600)
        else:
            builder.membership(f"mix{n}", 1000 + slot * 500, at, renewal=slot >= 8)
    mix.events.sort(key=lambda e: (e["created"], e["id"]))
    return mix


class StubStripe:
    """Stripe's read API on loopback (GET only), answering from `objects` at
    once, counting every request by path."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.requests: list[str] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            # Kept-alive connections, as Stripe's API keeps them (HTTP/1.0
            # closed each one: a connect per call in the worker's profile),
            # without Nagle's delay (the headers and the body are two writes;
            # with the client's delayed ACK each answer waited 40 ms).
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                with stub.lock:
                    stub.requests.append(url.path)
                body = stub.answer(url.path, query)
                data = json.dumps(
                    body
                    if body is not None
                    else {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
                ).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_bench")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def answer(self, path: str, query: dict[str, list[str]]) -> Any:
        def listing(items: list[Any]) -> dict[str, Any]:
            return {"object": "list", "data": items, "has_more": False, "url": path}

        if path == "/v1/invoice_payments":
            pi = (query.get("payment[payment_intent]") or [""])[0]
            return listing(self.objects.get(f"invoice_payments:{pi}", []))
        if path == "/v1/refunds":
            return listing(self.objects.get(f"refunds:{(query.get('charge') or [''])[0]}", []))
        return self.objects.get(path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[StubStripe]:
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
