"""`SandboxPayments`: the sandbox's face to the app. It answers the Payments
protocol and the read-only Stripe look-ups (StripeLookup) from stored objects,
and hands paying, renewing and delivery to their modules. Never used in
production or when a Stripe key is set; never commits the caller's session."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import Database
from app.payments import PaymentsError
from app.sandbox import changes, charging, objects, store
from app.sandbox.charging import PayResult
from app.sandbox.delivery import DeliveryReport, deliver_pending
from app.sandbox.objects import new_id


class SandboxPayments:
    """Stands in for `app.stripe_api.StripeApi` (Payments and the look-ups)."""

    livemode = False

    def __init__(
        self,
        database: Database,
        *,
        session: Callable[[], Session],
        public_base_url: str,
        webhook_url: str,
        webhook_secret: str,
        api_version: str,
        processing_fees: Mapping[str, Mapping[str, int]],
    ) -> None:
        self._database = database
        self._session = session
        self.public_base_url = public_base_url.rstrip("/")
        self.webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self.api_version = api_version
        self.processing_fees = processing_fees
        self._reader = store.reader_engine(database)

    @classmethod
    def from_config(
        cls, database: Database, config: dict[str, Any], session: Callable[[], Session]
    ) -> SandboxPayments:
        base = str(config["PUBLIC_BASE_URL"]).rstrip("/")
        return cls(
            database,
            session=session,
            public_base_url=base,
            webhook_url=str(config.get("SANDBOX_WEBHOOK_URL") or f"{base}/webhooks/stripe"),
            webhook_secret=config["STRIPE_WEBHOOK_SECRETS"][0],
            api_version=str(config["STRIPE_API_VERSION"]),
            processing_fees=config["PROCESSING_FEES"],
        )

    # -- Payments -------------------------------------------------------------

    def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """A new open Checkout Session; the same key with the same parameters
        gives the same session, with other parameters an error (as Stripe)."""
        session = self._session()
        remembered = store.remembered_response(session, idempotency_key, params)
        if remembered is not None:
            return remembered
        line_items, currency, amount, interval = objects.validate_params(params)
        now = utcnow()
        session_id = new_id("cs_test")
        checkout_session = objects.checkout_session(
            session_id, params, amount, currency, self.public_base_url, now
        )
        store.save(session, checkout_session, now)
        store.save(
            session,
            {
                "id": f"{session_id}:params",
                "object": "sandbox.checkout_params",
                "line_items": line_items,
                "interval": interval,
                "payment_intent_metadata": dict(
                    (params.get("payment_intent_data") or {}).get("metadata") or {}
                ),
                "subscription_metadata": dict(
                    (params.get("subscription_data") or {}).get("metadata") or {}
                ),
            },
            now,
        )
        store.remember_response(session, idempotency_key, params, checkout_session, now)
        session.flush()
        return copy.deepcopy(checkout_session)

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The session with `payment_intent` expanded, as StripeApi asks for it."""
        found = self._read(session_id, "checkout.session")
        intent_id = found.get("payment_intent")
        if intent_id:
            found["payment_intent"] = self._read(intent_id, "payment_intent")
        return found

    # -- a donor's own changes (MembershipChanges) --------------------------------

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return changes.update_subscription(
            self._session(),
            subscription_id,
            params,
            idempotency_key=idempotency_key,
            api_version=self.api_version,
        )

    def create_billing_portal_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return changes.create_portal_session(
            self._session(),
            params,
            idempotency_key=idempotency_key,
            public_base_url=self.public_base_url,
        )

    def portal_page(self, portal_id: str) -> dict[str, Any] | None:
        """The billing portal session of the sandbox's portal page, or None."""
        try:
            return self._read(portal_id, "billing_portal.session")
        except PaymentsError:
            return None

    # -- read-only look-ups (StripeLookup) ---------------------------------------

    def retrieve_balance_transaction(self, balance_transaction_id: str) -> dict[str, Any]:
        return self._read(balance_transaction_id, "balance_transaction")

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._read(charge_id, "charge")

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return self._read(payment_intent_id, "payment_intent")

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id, "customer")

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._read(subscription_id, "subscription")

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._read(invoice_id, "invoice")

    def list_invoice_payments(
        self, *, invoice: str | None = None, payment_intent: str | None = None
    ) -> list[dict[str, Any]]:
        """Invoice payments of an invoice, or those paid by a payment intent."""
        if (invoice is None) == (payment_intent is None):
            raise ValueError("give exactly one of invoice, payment_intent")
        found = []
        for item in self._read_all("invoice_payment"):
            if invoice is not None and item["invoice"] != invoice:
                continue
            if payment_intent is not None and item["payment"].get("payment_intent") != (
                payment_intent
            ):
                continue
            found.append(item)
        return sorted(found, key=lambda item: item["created"], reverse=True)

    def list_refunds(self, *, charge: str) -> list[dict[str, Any]]:
        """The refunds of a charge, newest first (the sandbox makes none yet)."""
        found = [item for item in self._read_all("refund") if item.get("charge") == charge]
        return sorted(found, key=lambda item: item["created"], reverse=True)

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        return self._read(refund_id, "refund")

    def list_balance_transactions(self, *, payout: str) -> list[dict[str, Any]]:
        """The sandbox makes no payouts, so any payout is unknown (not found,
        as Stripe answers for a payout id it does not have)."""
        self._read(payout, "payout")
        return []

    def _read(self, object_id: str, object_type: str) -> dict[str, Any]:
        return store.read(self._reader, object_id, object_type)

    def _read_all(self, object_type: str) -> list[dict[str, Any]]:
        return store.read_all(self._reader, object_type)

    # -- the checkout page ------------------------------------------------------

    def checkout_page(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The session and what it sells (line items, interval), or None."""
        try:
            checkout_session = self._read(session_id, "checkout.session")
            params = self._read(f"{session_id}:params", "sandbox.checkout_params")
        except PaymentsError:
            return None
        return checkout_session, params

    def known_email(self, checkout_session: dict[str, Any]) -> str | None:
        """The email Checkout would show fixed: the customer_email given, or
        the existing customer's."""
        if checkout_session.get("customer_email"):
            return str(checkout_session["customer_email"])
        customer_id = checkout_session.get("customer")
        if customer_id:
            try:
                return self.retrieve_customer(customer_id).get("email")
            except PaymentsError:
                return None
        return None

    def pay(self, session: Session, session_id: str, card_number: str, email: str) -> PayResult:
        """Pay an open session with a test card: the Stripe objects and the
        events Stripe would send (stored, not yet delivered). Flushes only."""
        return charging.pay(
            session,
            session_id,
            card_number,
            email,
            api_version=self.api_version,
            fees=self.processing_fees,
        )

    # -- renewals ---------------------------------------------------------------

    def active_subscription_ids(self, session: Session) -> list[str]:
        return charging.active_subscription_ids(session)

    def renew(self, session: Session, subscription_id: str) -> dict[str, Any]:
        """The next period of an active subscription, paid: the renewal's
        invoice (billing_reason subscription_cycle) and its payment, and the
        events Stripe sends for it (stored, not yet delivered). Flushes only."""
        return charging.renew(
            session, subscription_id, api_version=self.api_version, fees=self.processing_fees
        )

    # -- delivery ----------------------------------------------------------------

    def deliver_pending(self) -> DeliveryReport:
        """POST every undelivered event, oldest first, signed, to the webhook
        URL. A 2xx marks it delivered; anything else keeps it for the next
        try. Stops at the first connection failure (the receiver is down).
        Must not be called inside a transaction on the app's database."""
        return deliver_pending(self._database, self.webhook_url, self._webhook_secret)
