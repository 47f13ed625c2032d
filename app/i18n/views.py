"""The request's language (Flask-Babel's locale selector) and the language
switcher every donor page shows. Web side: reads the request, never writes.

The language is the URL prefix's (app.i18n.prefix), else the best match of
Accept-Language among LANGUAGES, else the first of LANGUAGES.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from babel import Locale
from flask import Blueprint, current_app, request
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from app.i18n.prefix import ENVIRON_KEY, unprefixed_root

bp = Blueprint("i18n", __name__)


@dataclass(frozen=True)
class LanguageLink:
    code: str
    name: str  # in its own language: "English", "Русский"
    href: str
    current: bool


def select_locale() -> Locale:
    """Flask-Babel's locale selector. A Locale made once per language: Babel
    parses a code anew each request (profiled: a twentieth of a GET /donate)
    and takes a Locale as it is."""
    return environ_locale(request.environ, current_app.config["LANGUAGES"])


def environ_locale(environ: dict[str, Any], languages: list[str]) -> Locale:
    """The language of a request given as its WSGI environ (app.donate.first_visit
    chooses it without Flask): the URL prefix's, else Accept-Language's best
    match among `languages` (the header as request.headers gives it)."""
    prefixed: str | None = environ.get(ENVIRON_KEY)
    if prefixed:
        return locale_of(prefixed)
    return best_language(environ.get("HTTP_ACCEPT_LANGUAGE"), tuple(languages))


@lru_cache(maxsize=512)
def best_language(header: str | None, languages: tuple[str, ...]) -> Locale:
    """Accept-Language's best match among `languages` (else the first), as
    Werkzeug's request.accept_languages finds it, kept per header text: the
    same few headers come again and again, and parsing one was a third of
    choosing the locale (profiled)."""
    accepted = parse_accept_header(header, LanguageAccept)
    return locale_of(accepted.best_match(languages) or languages[0])


@cache
def locale_of(code: str) -> Locale:
    return Locale.parse(code)


_IDENTIFIERS: dict[int, tuple[Locale, str]] = {}  # by id: a Locale hashes five fields a call
IDENTIFIERS_KEPT = 512


def identifier_of(locale: Locale) -> str:
    """str(locale), kept per Locale object (locale_of makes one per
    language): Babel builds the text anew on every call."""
    found = _IDENTIFIERS.get(id(locale))
    if found is None or found[0] is not locale:  # kept with it: its id is not reused
        found = (locale, str(locale))
        if len(_IDENTIFIERS) < IDENTIFIERS_KEPT:
            _IDENTIFIERS[id(locale)] = found
    return found[1]


def url_language() -> str | None:
    """The language the URL's prefix named (/ru/donate), if any."""
    language: str | None = request.environ.get(ENVIRON_KEY)
    return language


@cache
def native_name(code: str) -> str:
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def language_links(current: str) -> list[LanguageLink]:
    """This page in each offered language: its prefix, then the same path and query."""
    root = unprefixed_root(request.script_root, url_language())
    query = request.query_string.decode("latin-1")
    suffix = request.path + (f"?{query}" if query else "")
    return [
        LanguageLink(code, native_name(code), f"{root}/{code}{suffix}", code == current)
        for code in current_app.config["LANGUAGES"]
    ]


@bp.app_context_processor
def switcher() -> dict[str, Any]:
    return {"language_links": language_links}
