"""Pure mapping from Stripe payloads (plain dicts, any API version we may be
sent) to small typed facts the handlers act on, one module per Stripe object
family (like webhooks.handlers), re-exported here.

Reads both the current shapes (2026-10-28.endive: invoice parents, invoice
payments, subscription item periods, charges without `invoice`) and older ones
(`invoice.subscription` / `invoice.charge`, `payment_intent.invoice` and
`charges`, `subscription.current_period_end`). No database, no Stripe calls,
no Flask.
"""

from webhooks.mapping.balance import TxnRef, balance_txn, txn_ref
from webhooks.mapping.charges import ChargeFacts, PaymentIntentFacts, charge, payment_intent
from webhooks.mapping.checkout import CheckoutFacts, checkout_session
from webhooks.mapping.common import Json, event_created, event_object, object_id, to_datetime
from webhooks.mapping.disputes import DISPUTE_OUTCOMES, DisputeFacts, dispute, dispute_kind
from webhooks.mapping.invoices import (
    InvoiceFacts,
    InvoicePaymentFacts,
    invoice,
    invoice_payment,
    invoice_subscription,
)
from webhooks.mapping.payouts import PayoutFacts, payout
from webhooks.mapping.refunds import RefundFacts, refund, refunds_listed_on_charge
from webhooks.mapping.subscriptions import SubscriptionFacts, subscription

__all__ = [
    "DISPUTE_OUTCOMES",
    "ChargeFacts",
    "CheckoutFacts",
    "DisputeFacts",
    "InvoiceFacts",
    "InvoicePaymentFacts",
    "Json",
    "PaymentIntentFacts",
    "PayoutFacts",
    "RefundFacts",
    "SubscriptionFacts",
    "TxnRef",
    "balance_txn",
    "charge",
    "checkout_session",
    "dispute",
    "dispute_kind",
    "event_created",
    "event_object",
    "invoice",
    "invoice_payment",
    "invoice_subscription",
    "object_id",
    "payment_intent",
    "payout",
    "refund",
    "refunds_listed_on_charge",
    "subscription",
    "to_datetime",
    "txn_ref",
]
