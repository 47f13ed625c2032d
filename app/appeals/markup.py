"""Appeal bodies: Markdown (CommonMark, raw HTML off) rendered to HTML that
is then cleaned by an allow-list (nh3), so an admin's text can never carry a
script, a style or a link that opens inside the frame.

No Flask. Returns markupsafe.Markup only for text that went through nh3.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

TAGS = {"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "code"}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


@lru_cache(maxsize=512)
def render_markdown(text: str) -> Markup:
    """Safe HTML for an appeal body; links open at the top level, never in the frame."""
    html = _parser().render(text or "")
    cleaned = nh3.clean(
        html,
        tags=TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"https", "http", "mailto"},
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_top"}},
    )
    return Markup(cleaned)  # noqa: S704 (nh3 has cleaned it)
