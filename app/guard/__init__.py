"""Defences of the donor forms against card testing and other scripted use:
caps per address, per email and site-wide, a honeypot, an optional CAPTCHA
(Cloudflare Turnstile) asked for past a threshold. The core (limits, captcha)
knows no Flask; app.guard.gate wires it into the app.
"""
