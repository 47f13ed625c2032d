"""The outbox: slow or external work a ledger change causes (a receipt, a
notice, a look-up the webhook need not answer), written as a keyed job in the
same transaction as the change and run later by `donations worker`.

models (the table), queue (enqueue once per key, claim, outcomes, replay),
mail (SMTP or .eml files) and runner (runs one job in its own transaction:
the worker's and the CLI's edge). This package imports nothing that imports
it: features import `app.outbox.queue` to enqueue.
"""
