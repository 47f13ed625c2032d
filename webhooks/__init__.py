"""Stripe webhooks: the receiver (verify, store, acknowledge), the inbox of
stored events, the worker that applies them, and one handler module per Stripe
object family. Imported by the app only inside create_app."""
