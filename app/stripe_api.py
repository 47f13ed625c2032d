"""The one wrapper around Stripe's API: key, pinned API version, base address
(`STRIPE_API_BASE` for localstripe or stripe-mock), timeouts, network retries
and idempotency keys.

Nothing else in the project imports `stripe` for API calls. Callers get plain
dicts (Stripe's JSON) and our own exceptions (app.payments), never SDK objects
or errors; they program against the protocols in app.payments, which this
module implements.

The Checkout Session a donor waits on is created by a POST of our own
(`_send`) on the same pooled `requests` session, with what stripe-python
would send (the form encoding, the pinned version, the idempotency key, the
timeout, its retries and backoff, its error kinds): stripe-python's request
building, logging and response handling cost about as much CPU again as the
HTTP exchange itself (profiled, bench/README.md "Checkout"). The worker's
and sync's look-ups and lists are GETs of our own the same way (about half
of each look-up's CPU went to stripe-python, profiled on the worker's mix).
A donor's own changes (subscription update, billing portal) go through
stripe-python.

Why one module: Stripe stays behind this one wrapper, so the requests of our
own sit beside the SDK's calls whose key, version, retries and error kinds
they repeat; the next split would be those requests and their encoding into
a module of their own that only this one imports.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Any
from urllib.parse import quote, quote_plus

import requests
import stripe
from requests.structures import CaseInsensitiveDict

from app.payments import PaymentsError

log = logging.getLogger(__name__)


def _error_kind(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.RateLimitError):
        return "rate_limited"
    if isinstance(exc, stripe.APIConnectionError):
        return "unavailable"
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return "auth"
    if isinstance(exc, stripe.InvalidRequestError):
        return "not_found" if exc.http_status == 404 else "invalid"
    status = exc.http_status or 0
    if status == 429:
        return "rate_limited"
    return "unavailable" if status >= 500 or status == 0 else "invalid"


def _status_kind(status: int, error: Mapping[str, Any]) -> str:
    """The kind of a non-2xx answer, as `_error_kind` makes it of the error
    stripe-python raises for it (its `specific_v1_api_error`)."""
    if status == 429 or (status == 400 and error.get("code") == "rate_limit"):
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 404 and error.get("type") != "idempotency_error":
        return "not_found"
    return "unavailable" if status >= 500 else "invalid"


# What form encoding leaves as it is (with the brackets Stripe's keys keep).
_PLAIN = re.compile(r"[A-Za-z0-9_.~\-\[\]]*")


def _quoted(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else quote_plus(text, safe="[]")


def form_encode(params: Mapping[str, Any]) -> str:
    """Stripe's form encoding, as stripe-python's (`urlencode` of its pairs,
    the brackets then unescaped): nested objects as `a[b][c]`, lists indexed
    (`a[0][b]`), booleans as true/false, None left out. Plain text is not
    run through the quoting, which was most of stripe-python's encoding."""
    parts: list[str] = []

    def add(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                add(f"{name}[{key}]", item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                add(f"{name}[{index}]", item)
        elif isinstance(value, bool):
            parts.append(f"{_quoted(name)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{_quoted(name)}={value:d}")
        elif isinstance(value, str):
            parts.append(f"{_quoted(name)}={_quoted(value)}")
        else:
            raise TypeError(f"cannot send a {type(value).__name__} to Stripe")

    for key, value in params.items():
        add(key, value)
    return "&".join(parts)


def backoff_seconds(retry: int) -> float:
    """How long to wait before the `retry`th retry: stripe-python's backoff
    (0.5 s doubled each time, at most 5 s, jittered to between half and all
    of it, never under 0.5 s)."""
    seconds: float = min(0.5 * 2 ** (retry - 1), 5.0) * 0.5 * (1 + random.uniform(0, 1))
    return max(0.5, seconds)


# Stripe's list endpoints `donations stripe sync` pages through.
LISTABLE = frozenset(
    [
        "balance_transactions",
        "charges",
        "disputes",
        "invoice_payments",
        "invoices",
        "payouts",
        "refunds",
        "subscriptions",
    ]
)


class StripeApi:
    """Stripe through stripe-python's StripeClient, one instance per process."""

    def __init__(
        self,
        api_key: str,
        *,
        api_version: str,
        api_base: str | None = None,
        timeout_seconds: float = 10,
        max_network_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # stripe-python logs request bodies (donor emails) at DEBUG and Stripe's
        # error messages at INFO: keep its logger to warnings and above.
        logging.getLogger("stripe").setLevel(logging.WARNING)
        base_addresses: dict[str, str] = {"api": api_base.rstrip("/")} if api_base else {}
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self._base = (api_base or stripe.api_base).rstrip("/")
        self._session = _http_session(self._base)
        self._sdk = stripe.StripeClient(
            api_key,
            stripe_version=api_version,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=stripe.RequestsClient(timeout=timeout_seconds, session=self._session),
            max_network_retries=max_network_retries,
        )
        # What `_send` sends besides its body and key: the session's defaults
        # (Accept, Accept-Encoding, keep-alive) and what stripe-python adds.
        self._headers: dict[str, str] = {
            **{k: v for k, v in self._session.headers.items() if isinstance(v, str)},
            "User-Agent": f"donations (requests/{requests.__version__})",
            "Authorization": f"Bearer {api_key}",
            "Stripe-Version": api_version,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        # A GET's: no body, so no Content-Type (as stripe-python sends it).
        self._get_headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        self._timeout = timeout_seconds
        self._retries = max_network_retries
        self._sleep = sleep

    def _send(
        self,
        what: str,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Send a request to Stripe as stripe-python would, on the process's
        session: its HTTP adapter's `send` directly (what requests' Session
        would add is cookies, hooks, redirects and the environment, none of
        which a Stripe call uses; the proxies and CA bundle are passed here).
        A POST's `params` are its form-encoded body, sent with the
        idempotency key; a GET's are its query string. A connection error or
        timeout, a 409, a 5xx, or an answer saying Stripe-Should-Retry: true
        is retried up to `max_network_retries` times with stripe-python's
        backoff (a POST with the same idempotency key)."""
        encoded = form_encode(params)
        url = self._base + path
        if method == "POST":
            body: str | None = encoded
            headers = {**self._headers, "Content-Length": str(len(encoded))}
            if idempotency_key is not None:
                headers["Idempotency-Key"] = idempotency_key
        else:
            body = None
            if encoded:  # quoted as requests quotes the SDK's (brackets as %5B, %5D)
                prepared = requests.PreparedRequest()
                prepared.prepare_url(f"{url}?{encoded}", None)
                url = str(prepared.url)
            headers = self._get_headers
        adapter = self._session.get_adapter(url)
        attempt = 0
        while True:
            request = requests.PreparedRequest()
            request.method, request.url, request.body = method, url, body
            request.headers = CaseInsensitiveDict(headers)
            try:
                response = adapter.send(
                    request,
                    timeout=self._timeout,
                    verify=stripe.ca_bundle_path,
                    proxies=self._session.proxies,
                )
                content = response.content
            except (requests.RequestException, HTTPException, OSError, ValueError) as exc:
                # stripe-python retries timeouts and connection errors, not TLS failures.
                retry = isinstance(exc, requests.Timeout | requests.ConnectionError)
                retry = retry and not isinstance(exc, requests.exceptions.SSLError)
                if retry and attempt < self._retries:
                    attempt += 1
                    self._sleep(backoff_seconds(attempt))
                    continue
                raise self._http_failure(what, "unavailable", 0, None, None) from exc
            status = response.status_code
            should_retry = response.headers.get("Stripe-Should-Retry")
            if 200 <= status < 300:
                try:
                    data: Any = json.loads(content)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    return data
                raise self._http_failure(
                    what, "invalid", status, None, response.headers.get("Request-Id")
                )
            retry = (
                should_retry == "true"
                if should_retry in ("true", "false")
                else status == 409 or status >= 500
            )
            if retry and attempt < self._retries:
                attempt += 1
                self._sleep(backoff_seconds(attempt))
                continue
            try:
                error = json.loads(content).get("error")
            except (ValueError, AttributeError):
                error = None
            error = error if isinstance(error, dict) else {}
            raise self._http_failure(
                what,
                _status_kind(status, error),
                status,
                error.get("code"),
                response.headers.get("Request-Id"),
            )

    def _http_failure(
        self, what: str, kind: str, status: int, code: str | None, request_id: str | None
    ) -> PaymentsError:
        # As `_failure`: the kind, status, code and request id only.
        log.warning(
            "stripe %s failed: kind=%s status=%s code=%s request_id=%s",
            what,
            kind,
            status or None,
            code,
            request_id,
        )
        return PaymentsError(kind, f"Stripe {what} failed ({kind})", request_id=request_id)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise self._failure(what, exc) from exc
        data: dict[str, Any] = result.to_dict()
        return data

    def _raw(self, what: str, path: str, **params: Any) -> dict[str, Any]:
        """Stripe's JSON as it came, by `_send`: for the calls a donor waits
        on, building stripe-python's objects from a whole Checkout Session and
        turning them back into a dict cost more than the rest of the call,
        and for the worker's look-ups stripe-python's request building,
        logging and response handling about half of each call's CPU (both
        profiled)."""
        return self._send(what, "GET", path, params)

    def _failure(self, what: str, exc: stripe.StripeError) -> PaymentsError:
        kind = _error_kind(exc)
        # Stripe's messages can echo parameters (an email): log the kind,
        # status, code and request id only.
        log.warning(
            "stripe %s failed: kind=%s status=%s code=%s request_id=%s",
            what,
            kind,
            exc.http_status,
            exc.code,
            exc.request_id,
        )
        return PaymentsError(kind, f"Stripe {what} failed ({kind})", request_id=exc.request_id)

    def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return self._send(
            "checkout session create",
            "POST",
            "/v1/checkout/sessions",
            params,
            idempotency_key=idempotency_key,
        )

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._raw(
            "checkout session retrieve",
            f"/v1/checkout/sessions/{quote(session_id, safe='')}",
            expand=["payment_intent"],
        )

    # -- a donor's own changes (MembershipChanges) ------------------------------

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return self._call(
            "subscription update",
            self._sdk.v1.subscriptions.update,
            subscription_id,
            params=params,
            options={"idempotency_key": idempotency_key},
        )

    def create_billing_portal_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return self._call(
            "billing portal session create",
            self._sdk.v1.billing_portal.sessions.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )

    # -- read-only look-ups for webhook processing (StripeLookup) -------------
    # Raw requests, Stripe's JSON as it came: building stripe-python's objects
    # and turning them back into dicts was about half of each look-up's CPU
    # in the worker (profiled on the benchmark's mix), a fifth of the worker's.

    def _get(self, what: str, path: str, object_id: str) -> dict[str, Any]:
        return self._raw(what, f"{path}/{quote(object_id, safe='')}")

    def _list_all(self, what: str, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page_params = {**params, "limit": 100}
        while True:
            page = self._raw(what, f"/v1/{resource}", **page_params)
            data: list[dict[str, Any]] = list(page.get("data") or [])
            items.extend(data)
            if not page.get("has_more") or not data:
                return items
            page_params = {**page_params, "starting_after": data[-1]["id"]}

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        return self._get(
            "balance transaction retrieve", "/v1/balance_transactions", balance_transaction_id
        )

    def list_balance_transactions(self, *, payout: str) -> list[dict[str, Any]]:
        return self._list_all(
            "balance transaction list", "balance_transactions", {"payout": payout}
        )

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._get("subscription retrieve", "/v1/subscriptions", subscription_id)

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._get("invoice retrieve", "/v1/invoices", invoice_id)

    def list_invoice_payments(
        self, *, invoice: str | None = None, payment_intent: str | None = None
    ) -> list[dict[str, Any]]:
        if (invoice is None) == (payment_intent is None):
            raise ValueError("give exactly one of invoice, payment_intent")
        params: dict[str, Any] = (
            {"invoice": invoice}
            if invoice is not None
            else {"payment": {"type": "payment_intent", "payment_intent": payment_intent}}
        )
        # The invoice expanded: whether a subscription is behind it, without a call.
        params["expand"] = ["data.invoice"]
        return self._list_all("invoice payment list", "invoice_payments", params)

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._get("charge retrieve", "/v1/charges", charge_id)

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._get("customer retrieve", "/v1/customers", customer_id)

    def list_refunds(self, *, charge: str) -> list[dict[str, Any]]:
        return self._list_all("refund list", "refunds", {"charge": charge})

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        return self._get("refund retrieve", "/v1/refunds", refund_id)

    # -- one page of a list, for `donations stripe sync` (StripeLists) ---------

    def list_page(self, resource: str, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's JSON as it came (a raw request: building SDK objects for
        100 items a page would cost more than the request)."""
        if resource not in LISTABLE:
            raise ValueError(f"{resource!r} is not a list sync reads")
        return self._raw(f"{resource} list", f"/v1/{resource}", **params)


def _http_session(api_base: str) -> requests.Session:
    """One HTTP session for every thread of the process, so its kept-alive
    connections to Stripe are reused whichever thread serves the donor. The
    environment is read once here, not on each call (requests' `trust_env`
    reads every variable for proxies and stats ~/.netrc per request): a
    proxy set for Stripe's address (HTTPS_PROXY, NO_PROXY) still applies,
    and no .netrc can replace the API key's header."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(api_base))
    session.trust_env = False
    return session


def payments_from_settings(settings: dict[str, Any]) -> StripeApi | None:
    """Stripe when a key is configured, otherwise None (the caller decides what
    unconfigured means: the sandbox in development, an error in production)."""
    key = settings.get("STRIPE_SECRET_KEY")
    if not key:
        return None
    return StripeApi(
        key,
        api_version=settings["STRIPE_API_VERSION"],
        api_base=settings.get("STRIPE_API_BASE"),
        timeout_seconds=float(settings["STRIPE_TIMEOUT_SECONDS"]),
        max_network_retries=int(settings["STRIPE_MAX_NETWORK_RETRIES"]),
    )
