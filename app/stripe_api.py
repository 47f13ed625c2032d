"""The one wrapper around Stripe's API: key, pinned API version, base address
(`STRIPE_API_BASE` for localstripe or stripe-mock), timeouts, network retries
and idempotency keys.

Nothing else in the project imports `stripe` for API calls. Callers get plain
dicts (Stripe's JSON) and our own exceptions (app.payments), never SDK objects
or errors; they program against the protocols in app.payments, which this
module implements.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests
import stripe

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
    ) -> None:
        # stripe-python logs request bodies (donor emails) at DEBUG and Stripe's
        # error messages at INFO: keep its logger to warnings and above.
        logging.getLogger("stripe").setLevel(logging.WARNING)
        base_addresses: dict[str, str] = {"api": api_base.rstrip("/")} if api_base else {}
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self._sdk = stripe.StripeClient(
            api_key,
            stripe_version=api_version,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=stripe.RequestsClient(
                timeout=timeout_seconds, session=_http_session(api_base or stripe.api_base)
            ),
            max_network_retries=max_network_retries,
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise self._failure(what, exc) from exc
        data: dict[str, Any] = result.to_dict()
        return data

    def _raw(self, what: str, method: str, path: str, **params: Any) -> dict[str, Any]:
        """Stripe's JSON as it came: for the calls a donor waits on, building
        stripe-python's objects from a whole Checkout Session and turning them
        back into a dict cost more than the rest of the call (profiled)."""
        try:
            response = self._sdk.raw_request(method, path, **params)
        except stripe.StripeError as exc:
            raise self._failure(what, exc) from exc
        data: dict[str, Any] = response.data
        return data

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
        return self._raw(
            "checkout session create",
            "post",
            "/v1/checkout/sessions",
            **params,
            idempotency_key=idempotency_key,
        )

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._raw(
            "checkout session retrieve",
            "get",
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

    def _list_all(self, what: str, fn: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page_params = {**params, "limit": 100}
        while True:
            page = self._call(what, fn, params=page_params)
            data: list[dict[str, Any]] = list(page.get("data") or [])
            items.extend(data)
            if not page.get("has_more") or not data:
                return items
            page_params = {**page_params, "starting_after": data[-1]["id"]}

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        return self._call(
            "balance transaction retrieve",
            self._sdk.v1.balance_transactions.retrieve,
            balance_transaction_id,
        )

    def list_balance_transactions(self, *, payout: str) -> list[dict[str, Any]]:
        return self._list_all(
            "balance transaction list", self._sdk.v1.balance_transactions.list, {"payout": payout}
        )

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._call(
            "subscription retrieve", self._sdk.v1.subscriptions.retrieve, subscription_id
        )

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._call("invoice retrieve", self._sdk.v1.invoices.retrieve, invoice_id)

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
        return self._list_all("invoice payment list", self._sdk.v1.invoice_payments.list, params)

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call("charge retrieve", self._sdk.v1.charges.retrieve, charge_id)

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call("customer retrieve", self._sdk.v1.customers.retrieve, customer_id)

    def list_refunds(self, *, charge: str) -> list[dict[str, Any]]:
        return self._list_all("refund list", self._sdk.v1.refunds.list, {"charge": charge})

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        return self._call("refund retrieve", self._sdk.v1.refunds.retrieve, refund_id)

    # -- one page of a list, for `donations stripe sync` (StripeLists) ---------

    def list_page(self, resource: str, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's JSON as it came (a raw request: building SDK objects for
        100 items a page would cost more than the request)."""
        if resource not in LISTABLE:
            raise ValueError(f"{resource!r} is not a list sync reads")
        try:
            response = self._sdk.raw_request("get", f"/v1/{resource}", **params)
        except stripe.StripeError as exc:
            raise self._failure(f"{resource} list", exc) from exc
        data: dict[str, Any] = response.data
        return data


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
