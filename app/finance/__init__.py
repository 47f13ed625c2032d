"""The finance area: the staff pages under /ledger (views: dashboard, journal,
exports, donors, memberships, campaigns; events: the webhook inbox and replay),
what they share (area), their read queries (reports, the core: no Flask, no
`stripe`) and the server-rendered SVG charts (charts).
"""
