"""Every donor-facing string (what babel.cfg extracts from the code and the
templates) has a translation in every configured language, and the catalogs
the app reads are compiled from the committed .po files."""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.support import Translations

from app.i18n.catalogs import TRANSLATIONS, catalog_path, compile_catalogs, extract, missing
from app.settings import load_settings

SOURCE_LANGUAGE = "en"  # the msgids themselves
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
LANGUAGES = [code for code in load_settings()["LANGUAGES"] if code != SOURCE_LANGUAGE]


@pytest.fixture(scope="module")
def wanted() -> Catalog:
    return extract()


def test_the_donor_facing_catalog_is_not_empty_and_leaves_staff_pages_out(wanted: Catalog) -> None:
    files = {path for message in wanted for path, _line in message.locations}
    assert "templates/donate/form.html" in files
    assert "templates/email/receipt.txt" in files
    assert "app/donate/forms.py" in files
    assert not any(path.startswith(("templates/staff/", "templates/finance/")) for path in files)
    assert len(wanted) > 100


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_donor_facing_string_is_translated(language: str, wanted: Catalog) -> None:
    assert catalog_path(language).exists(), f"no catalog for {language}: see README"
    gaps = missing(language, wanted)
    assert not gaps, (
        f"{len(gaps)} donor-facing strings lack a {language} translation in "
        f"{catalog_path(language).relative_to(TRANSLATIONS.parent)} (run `make translations`, "
        f"then translate): {gaps}"
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_every_placeholder(language: str) -> None:
    with catalog_path(language).open("rb") as fileobj:
        catalog = read_po(fileobj, locale=language)
    for message in catalog:
        if message.id and message.string and message.python_format:
            wanted = sorted(set(PLACEHOLDER.findall(str(message.id))))
            assert sorted(set(PLACEHOLDER.findall(str(message.string)))) == wanted, message.id


def test_the_compiled_catalog_is_what_the_po_says() -> None:
    compile_catalogs(force=True)
    for language in LANGUAGES:
        mo = catalog_path(language, "mo")
        assert mo.exists()
        translations = Translations.load(str(TRANSLATIONS), [language])
        assert translations.gettext("Support our journalism") != "Support our journalism"
