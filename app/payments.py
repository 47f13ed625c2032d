"""What the app needs from a payments provider, whoever provides it (Stripe
through app.stripe_api, or the offline sandbox): the `Payments` and
`StripeLookup` protocols, and `PaymentsError`, the one error they raise; and
`Webhooks`, the few pieces of the webhooks package app code uses, handed in by
create_app (app imports `webhooks` only there). Imports no `stripe` and no
Flask, so the core can name these without pulling the SDK in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.db import Database
    from app.ledger import BalanceTxn


class PaymentsError(Exception):
    """Stripe could not do what we asked. `kind` is one of: rate_limited,
    unavailable (network, timeout, 5xx), invalid (4xx we caused), auth,
    not_found. Messages never carry personal data."""

    def __init__(self, kind: str, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "unavailable")


class Payments(Protocol):
    """What the rest of the app needs from a payments provider: Stripe itself
    (`StripeApi`) or the offline sandbox, which imitates it."""

    livemode: bool

    def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]: ...

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]: ...


class StripeLookup(Protocol):
    """The read-only calls webhook processing may make, only for what an
    event's payload lacks. Each returns Stripe's JSON as a plain dict (lists:
    every item, pages followed) and raises PaymentsError; a missing object is
    PaymentsError("not_found"). Implemented by StripeApi and the sandbox."""

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        """GET /v1/balance_transactions/{id}: a payment's fee and net."""
        ...

    def list_balance_transactions(self, *, payout: str) -> list[dict[str, Any]]:
        """GET /v1/balance_transactions?payout=po_...: what an automatic payout
        paid out (fees and adjustments included)."""
        ...

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """GET /v1/subscriptions/{id}: the current state, on a tie of events."""
        ...

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        """GET /v1/invoices/{id}."""
        ...

    def list_invoice_payments(
        self, *, invoice: str | None = None, payment_intent: str | None = None
    ) -> list[dict[str, Any]]:
        """GET /v1/invoice_payments?invoice=... or, from a payment to its
        invoice, ?payment[type]=payment_intent&payment[payment_intent]=pi_...;
        `invoice` may come expanded (Stripe's is: whether a subscription is
        behind it), or as an id."""
        ...

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        """GET /v1/charges/{id}."""
        ...

    def list_refunds(self, *, charge: str) -> list[dict[str, Any]]:
        """GET /v1/refunds?charge=ch_...: a charge's refunds, where no refund
        event told us of them (API versions 2022-11-15 up to 2024-10-28)."""
        ...

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        """GET /v1/refunds/{id}: a refund seen only as a balance transaction."""
        ...

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        """GET /v1/customers/{id}: a donor's email when no payload has it."""
        ...


class StripeLists(Protocol):
    """One page of a Stripe list (`GET /v1/<resource>` with `limit`,
    `starting_after`, `created[gte]`/`created[lt]`, `expand[]`, ...), as
    Stripe's JSON: `data` and `has_more`. For `donations stripe sync`; raises
    PaymentsError (`rate_limited` on a 429)."""

    def list_page(self, resource: str, params: dict[str, Any]) -> dict[str, Any]: ...


class BalanceTxnRef(Protocol):
    """A balance transaction as a payload has it (webhooks.mapping's TxnRef):
    its id, and its figures when the payload expanded it."""

    @property
    def id(self) -> str: ...
    @property
    def expanded(self) -> BalanceTxn | None: ...


class ChargeReading(Protocol):
    """What a charge payload says, as the handlers read it
    (webhooks.mapping's ChargeFacts): the part `stripe sync` plans with."""

    @property
    def id(self) -> str: ...
    @property
    def amount_minor(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def livemode(self) -> bool: ...
    @property
    def customer_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def payment_intent_id(self) -> str | None: ...
    @property
    def balance_transaction(self) -> BalanceTxnRef | None: ...
    @property
    def checkout_id(self) -> str | None: ...
    @property
    def frequency(self) -> str | None: ...
    @property
    def invoice_id(self) -> str | None: ...
    @property
    def invoice_known(self) -> bool: ...
    @property
    def refunded(self) -> bool: ...
    @property
    def disputed(self) -> bool: ...
    @property
    def amount_refunded_minor(self) -> int: ...
    @property
    def refunds(self) -> Sequence[Any]: ...
    @property
    def recognisable(self) -> bool: ...


@dataclass(frozen=True)
class Webhooks:
    """What app code may use of the `webhooks` package, built by
    `webhooks.hooks.webhooks()` and handed in by create_app
    (`app.extensions["donations.webhooks"]`) or the worker: `stripe sync`
    posts through the handlers' own dispatcher, and the events page replays
    through the worker's own code."""

    # One Stripe event (parsed JSON) to the ledger and records; never commits.
    apply_event: Callable[[Session, dict[str, Any], StripeLookup], None]
    # A balance transaction object's figures.
    balance_txn: Callable[[dict[str, Any]], BalanceTxn]
    # A charge object, read as the handlers read it.
    charge: Callable[[dict[str, Any]], ChargeReading]
    # The inbox's failed and dead events, Stripe's oldest first.
    list_failed: Callable[[Session], list[Any]]
    # Make stored events due again now, with a fresh retry budget.
    reset_for_replay: Callable[[Session, Sequence[Any], datetime], None]
    # Process one stored event now (its own transaction): "type: status", or
    # None when another worker took it.
    replay: Callable[[Database, Any, Mapping[str, Any], str], str | None]


class MembershipChanges(Protocol):
    """The calls a donor's own changes make (app.manage): each takes our
    idempotency key, derived from the action row, so a retried action is one
    change at Stripe. Implemented by StripeApi and the sandbox; raises
    PaymentsError."""

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]: ...

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """POST /v1/subscriptions/{id}: cancel_at_period_end, items with
        price_data, proration_behavior, metadata."""
        ...

    def create_billing_portal_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """POST /v1/billing_portal/sessions: `customer`, `return_url`,
        `flow_data` (payment_method_update), `locale`; its `url` is where the
        donor updates their card."""
        ...
