"""Reconciliation with Stripe: `donations stripe sync` pages through Stripe's
lists and posts what the ledger lacks through the webhook handlers' own code
(sync), then compares Stripe's balance transactions with the ledger, per
currency and per payout (report). Its core (models, sync, report) imports no
Flask and no `stripe`; cli is its edge.
"""
