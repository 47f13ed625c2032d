"""What the newsroom's page shows, per language: the settings of config/
with `[localised.<lang>]` overriding any of them for that language; and the
colour checks (WCAG contrast) that settings run at start.

No Flask. Reads settings; never writes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
WHITE = "#ffffff"
AA_CONTRAST = 4.5  # WCAG 2 AA for normal text
# The footer's links, in order; each a setting <kind>_url.
FOOTER_LINKS = ("privacy", "terms", "contact", "tax_status")
COLOURS = ("COLOUR_ACCENT", "COLOUR_INK", "COLOUR_BACKGROUND")


def localised(settings: Mapping[str, Any], name: str, language: str) -> Any:
    """Setting `name` (upper case) for `language`: its `[localised.<lang>]`
    value when there is one, the plain setting otherwise."""
    table = (settings.get("LOCALISED") or {}).get(language) or {}
    return table.get(name.lower(), settings.get(name))


@dataclass(frozen=True)
class Page:
    name: str
    appeal: str  # empty: the catalog's default words
    logo: str  # a file under static/, or empty
    links: tuple[tuple[str, str], ...]  # (kind, href) for each link that is set
    tax_status: str  # shown as text when no tax_status_url is set
    share_url: str  # empty: the form's own address

    @classmethod
    def for_language(cls, settings: Mapping[str, Any], language: str) -> Page:
        def text(name: str) -> str:
            return str(localised(settings, name, language) or "").strip()

        links = []
        for kind in FOOTER_LINKS:
            href = text(f"{kind.upper()}_URL")
            if not href and kind == "contact" and text("ORGANISATION_CONTACT_EMAIL"):
                href = f"mailto:{text('ORGANISATION_CONTACT_EMAIL')}"
            if href:
                links.append((kind, href))
        return cls(
            name=text("ORGANISATION_NAME"),
            appeal=text("APPEAL"),
            logo=text("LOGO"),
            links=tuple(links),
            tax_status=text("ORGANISATION_TAX_STATUS"),
            share_url=text("SHARE_URL"),
        )


def stylesheet(settings: Mapping[str, Any]) -> str:
    """The colours as CSS custom properties (static/site.css uses them)."""
    accent, ink, background = (str(settings[name]).lower() for name in COLOURS)
    return f":root {{\n  --accent: {accent};\n  --ink: {ink};\n  --bg: {background};\n}}\n"


def stylesheet_version(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(stylesheet(settings).encode()).hexdigest()[:12]


def relative_luminance(colour: str) -> float:
    channels = []
    for i in (1, 3, 5):
        c = int(colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours (1 to 21)."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def colour_problem(settings: Mapping[str, Any]) -> str | None:
    """Why the colours cannot be used (named by setting), or None."""
    for name in COLOURS:
        value = str(settings.get(name) or "")
        if not HEX_COLOUR.fullmatch(value):
            return f"{name} must be a colour like #0b5cad, not {value!r}"
    accent, ink, background = (str(settings[name]) for name in COLOURS)
    pairs = [
        ("COLOUR_INK", ink, "COLOUR_BACKGROUND", background),
        ("COLOUR_ACCENT", accent, "COLOUR_BACKGROUND", background),
        ("COLOUR_ACCENT", accent, "white button text", WHITE),
    ]
    for name, colour, other_name, other in pairs:
        ratio = contrast(colour, other)
        if ratio < AA_CONTRAST:
            return (
                f"{name} {colour} against {other_name} ({other}) has contrast "
                f"{ratio:.1f}:1; readable text needs {AA_CONTRAST}:1 (WCAG AA)"
            )
    return None
