"""Observability: Prometheus metrics (`metrics`), structured JSON logs with a
request id (`logs`), and the web side that serves /metrics and times every
request (`views`).

Never puts a donor's email, a name or a secret into a metric label or a log line.
"""
