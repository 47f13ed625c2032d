"""The message catalogs: what babel.cfg says donors read (extracted with
Babel from the code and templates), what each language's .po still lacks,
and compiling every .po to the .mo Flask-Babel and the receipts read.

No Flask. Reads the repository; writes only .mo files beside their .po.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from app.settings import ROOT

TRANSLATIONS = ROOT / "translations"
MAPPING = ROOT / "babel.cfg"
# Babel's own keywords plus the lazy ones forms and constants use.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "N_": None}


def catalog_path(locale: str, suffix: str = "po") -> Path:
    return TRANSLATIONS / locale / "LC_MESSAGES" / f"messages.{suffix}"


def extract() -> Catalog:
    """Every donor-facing message, as `make translations` extracts it."""
    with MAPPING.open(encoding="utf-8") as fileobj:
        method_map, options_map = parse_mapping_cfg(fileobj, str(MAPPING))  # type: ignore[no-untyped-call]
    catalog = Catalog(project="donations", charset="utf-8")
    found = extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    )
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read_catalog(locale: str) -> Catalog:
    with catalog_path(locale).open("rb") as fileobj:
        return read_po(fileobj, locale=locale)


def missing(locale: str, wanted: Catalog | None = None) -> list[str]:
    """The donor-facing messages `locale`'s .po lacks, leaves empty or marks fuzzy."""
    wanted = wanted if wanted is not None else extract()
    have = read_catalog(locale)
    gaps = []
    for message in wanted:
        if not message.id:
            continue
        found = have.get(message.id, context=message.context)
        strings = found.string if found is not None else None
        texts = strings if isinstance(strings, tuple | list) else (strings,)
        if found is None or found.fuzzy or not all(texts):
            gaps.append(message.id if isinstance(message.id, str) else message.id[0])
    return gaps


def compile_catalogs(force: bool = False) -> list[Path]:
    """Each translations/<lang>/LC_MESSAGES/messages.po to its .mo, when the
    .mo is missing or older (or `force`); returns the files written."""
    written = []
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if not force and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as fileobj:
            catalog = read_po(fileobj, locale=po.parent.parent.name)
        tmp = mo.with_suffix(".mo.tmp")
        with tmp.open("wb") as out:
            write_mo(out, catalog)
        tmp.replace(mo)  # atomic: a parallel reader sees the old file or the new
        written.append(mo)
    return written
