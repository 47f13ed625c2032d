"""Reader appeals: the end-of-article appeal and the site banner, embeddable
in any article page, the nudge to give monthly, and their measurement.

The package's core (definitions, markup, links, counters, nudge, funnel)
imports no Flask; views.py and forms.py are the web edge.
"""
