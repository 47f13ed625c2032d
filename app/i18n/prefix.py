"""The language prefix of a URL: /ru/donate is /donate in Russian. A WSGI
middleware moves the prefix from PATH_INFO to SCRIPT_NAME, so every route
exists once, unprefixed routes keep working, and url_for keeps a page's links
in its language. No Flask; never reads or changes anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

ENVIRON_KEY = "donations.language"  # the language the URL's prefix named

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LanguagePrefix:
    """`/<lang>/rest` → `/rest` under SCRIPT_NAME `…/<lang>`, for the
    configured languages only (anything else is left as it came)."""

    def __init__(self, app: WSGIApp, languages: Iterable[str]) -> None:
        self.app = app
        self.languages = frozenset(languages)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO") or ""
        first, slash, rest = path[1:].partition("/")
        if path.startswith("/") and first in self.languages:
            environ[ENVIRON_KEY] = first
            environ["SCRIPT_NAME"] = f"{environ.get('SCRIPT_NAME', '')}/{first}"
            environ["PATH_INFO"] = f"/{rest}" if slash else "/"
        return self.app(environ, start_response)


def unprefixed_root(script_name: str, language: str | None) -> str:
    """SCRIPT_NAME as it was before the language prefix was added."""
    if language and script_name.endswith(f"/{language}"):
        return script_name[: -len(language) - 1]
    return script_name
