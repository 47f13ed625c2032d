"""The donation flow: the form (forms), a Stripe Checkout Session for a gift
and its record (checkout, models), and the donor-facing pages (views: /donate
and its thanks page). Only `checkout` and `models` are core: they import no
Flask and no `stripe`; `forms` and `views` are the web edge.
"""
