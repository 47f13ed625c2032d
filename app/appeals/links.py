"""The addresses appeals hand out: /donate links pre-filled with the appeal's
attribution (campaign=<slug>, utm_medium=appeal, utm_content=<article>,
utm_term=<variant>), tracked links for newsletters and posts, the one-line
embed snippets, and the normal form of an article (what utm_content keeps).

No Flask: plain strings in, strings out; never a reader's data.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from app.money import format_plain

ATTRIBUTION_MAX = 100  # the checkout record's utm_* columns
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def allowed_origins(raw: Any) -> list[str]:
    """The origins that may frame the embed (`embed_allowed_origins`: a list,
    or a comma-separated string from the environment): scheme://host[:port]
    and nothing more, else ValueError naming the first bad one."""
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    origins = []
    for origin in raw or []:
        if not isinstance(origin, str) or not ORIGIN.fullmatch(origin.rstrip("/")):
            raise ValueError(f"{origin!r} is not an origin (https://host[:port])")
        origins.append(origin.rstrip("/"))
    return origins


def normalise_article(text: str | None) -> str:
    """An article id as utm_content keeps it: a URL loses its scheme, query
    and fragment (tracking parameters would split one article in many); at
    most 100 characters. "" for nothing usable."""
    value = CONTROL.sub("", (text or "").strip())
    if value.lower().startswith(("http://", "https://")):
        parts = urlsplit(value)
        value = (parts.netloc.lower() + parts.path).rstrip("/")
    return value[:ATTRIBUTION_MAX]


def donate_query(
    slug: str,
    variant: str,
    article: str,
    *,
    currency: str,
    frequency: str,
    amount_minor: int | None = None,
    source: str | None = None,
) -> str:
    """The query string of /donate for one of an appeal's buttons."""
    query: dict[str, str] = {}
    if amount_minor is not None:
        query["amount"] = format_plain(amount_minor, currency)
    query.update(currency=currency, frequency=frequency, campaign=slug)
    if source:
        query["utm_source"] = source[:ATTRIBUTION_MAX]
    query["utm_medium"] = "appeal"
    if article:
        query["utm_content"] = article
    if variant:
        query["utm_term"] = variant
    return urlencode(query)


def tracked_url(
    base_url: str,
    *,
    campaign: str,
    source: str,
    medium: str,
    content: str = "",
    term: str = "",
    amount_minor: int | None = None,
    currency: str | None = None,
    frequency: str | None = None,
) -> str:
    """A /donate link for a newsletter or a social post, with its attribution."""
    query: dict[str, str] = {}
    if amount_minor is not None and currency:
        query["amount"] = format_plain(amount_minor, currency)
    if currency:
        query["currency"] = currency
    if frequency:
        query["frequency"] = frequency
    query["campaign"] = campaign
    for name, value in (
        ("utm_source", source),
        ("utm_medium", medium),
        ("utm_content", content),
        ("utm_term", term),
    ):
        value = CONTROL.sub("", value or "").strip()[:ATTRIBUTION_MAX]
        if value:
            query[name] = value
    return f"{base_url.rstrip('/')}/donate?{urlencode(query)}"


def embed_snippets(base_url: str, slug: str, article_placeholder: str) -> dict[str, str]:
    """What a newsroom pastes into its article template: an iframe, or the
    script that writes and sizes it (and passes the page's own address)."""
    base = base_url.rstrip("/")
    src = f"{base}/embed/appeals/{slug}?{urlencode({'article': article_placeholder})}"
    iframe = (
        f'<iframe src="{escape(src)}" title="Support us" loading="lazy" '
        f'width="100%" height="320" frameborder="0"></iframe>'
    )
    script = f'<script src="{escape(base)}/embed/appeals.js" data-appeal="{escape(slug)}" async></script>'
    banner = (
        f'<script src="{escape(base)}/embed/appeals.js" data-appeal="{escape(slug)}" '
        f'data-layout="banner" async></script>'
    )
    return {"iframe": iframe, "script": script, "banner": banner}
