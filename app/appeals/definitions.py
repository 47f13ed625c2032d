"""What an appeal is (slug, variants with texts per language, amounts per
currency, default frequency, dates, active), read from config/appeals.toml
and from admins' overrides (TOML text), and validated.

No Flask, no commits. A bad definition is an AppealError whose one-line
message names the field; at start-up the view turns it into a ConfigError.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.appeals.models import AppealOverride
from app.money import charge_step

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
VARIANT_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,19}")
FREQUENCIES = ("once", "month", "year")
TEXT_FIELDS = ("headline", "body", "banner")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_TEXT = {"headline": 200, "body": 4000, "banner": 300}


class AppealError(ValueError):
    """An appeal that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Texts:
    headline: str
    body: str  # Markdown
    banner: str


@dataclass(frozen=True)
class Variant:
    key: str
    texts: Mapping[str, Texts]  # per language
    amounts: Mapping[str, Mapping[str, tuple[int, ...]]]  # currency -> frequency -> minor units

    def text(self, language: str, fallback: str) -> Texts:
        return (
            self.texts.get(language) or self.texts.get(fallback) or next(iter(self.texts.values()))
        )


@dataclass(frozen=True)
class Appeal:
    slug: str
    active: bool
    starts_on: date | None
    ends_on: date | None
    default_frequency: str
    amounts: Mapping[str, Mapping[str, tuple[int, ...]]]
    variants: tuple[Variant, ...]
    source: str = "config"  # or "admin"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def live_on(self, day: date) -> bool:
        """Active, and `day` within its dates (inclusive)."""
        if not self.active:
            return False
        if self.starts_on and day < self.starts_on:
            return False
        return not (self.ends_on and day > self.ends_on)

    def variant(self, key: str | None) -> Variant | None:
        return next((v for v in self.variants if v.key == key), None)

    def amounts_for(
        self, variant: Variant, currency: str, frequency: str, presets: Mapping[str, Any]
    ) -> tuple[int, ...]:
        """The buttons: the variant's own, else the appeal's, else the site's presets."""
        for table in (variant.amounts, self.amounts):
            found = table.get(currency, {}).get(frequency)
            if found:
                return found
        return tuple(presets.get(currency, {}).get(frequency, ()))


@dataclass(frozen=True)
class Rules:
    """What a definition is checked against: the site's currencies, their
    limits and the languages offered."""

    currencies: tuple[str, ...]
    limits: Mapping[str, Mapping[str, int]]
    languages: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Rules:
        languages = tuple(config["LANGUAGES"])
        if "ru" not in languages:  # appeal texts may be Russian before the pages are
            languages = (*languages, "ru")
        return cls(tuple(config["CURRENCIES"]), config["CURRENCY_LIMITS"], languages)


def _day(raw: Any, name: str) -> date | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError as exc:
        raise AppealError(f"{name} must be a day (YYYY-MM-DD) or empty") from exc


def _amounts(raw: Any, name: str, rules: Rules) -> dict[str, dict[str, tuple[int, ...]]]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise AppealError(f"{name} must be a table of currencies")
    found: dict[str, dict[str, tuple[int, ...]]] = {}
    for currency, per_frequency in raw.items():
        # A currency the site does not offer (now) is kept but unused; one
        # without limits is a mistake.
        if currency not in rules.limits:
            raise AppealError(f"{name}.{currency}: not a currency with currency_limits")
        if not isinstance(per_frequency, dict):
            raise AppealError(f"{name}.{currency} must be a table of frequencies")
        low, high = int(rules.limits[currency]["min"]), int(rules.limits[currency]["max"])
        found[currency] = {}
        for frequency, values in per_frequency.items():
            where = f"{name}.{currency}.{frequency}"
            if frequency not in FREQUENCIES:
                raise AppealError(f"{where}: the frequency must be once, month or year")
            if not isinstance(values, list) or not 1 <= len(values) <= 6:
                raise AppealError(f"{where} must list 1 to 6 amounts")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise AppealError(f"{where}: amounts are whole numbers of minor units")
                if not (low <= value <= high and value % charge_step(currency) == 0):
                    raise AppealError(f"{where}: {value} is outside the currency's limits")
            found[currency][frequency] = tuple(values)
    return found


def _texts(raw: Any, where: str, rules: Rules) -> dict[str, Texts]:
    if not isinstance(raw, dict) or not raw:
        raise AppealError(f"{where}.texts needs a table per language (en, ru)")
    texts = {}
    for language, values in raw.items():
        if language not in rules.languages:
            raise AppealError(f"{where}.texts.{language}: not a language offered")
        if not isinstance(values, dict):
            raise AppealError(f"{where}.texts.{language} must be a table")
        parts = {}
        for name in TEXT_FIELDS:
            value = values.get(name, "")
            if not isinstance(value, str):
                raise AppealError(f"{where}.texts.{language}.{name} must be text")
            if len(value) > MAX_TEXT[name]:
                raise AppealError(
                    f"{where}.texts.{language}.{name}: at most {MAX_TEXT[name]} characters"
                )
            parts[name] = value.strip()
        if not parts["headline"]:
            raise AppealError(f"{where}.texts.{language}.headline is empty")
        texts[language] = Texts(**parts)
    return texts


def parse_appeal(slug: str, raw: Mapping[str, Any], rules: Rules, source: str) -> Appeal:
    """One appeal from its table (as TOML reads it), or AppealError."""
    if not SLUG.fullmatch(slug):
        raise AppealError(f"appeal slug {slug!r}: lower-case letters, digits and '-', at most 40")
    where = f"appeal {slug}"
    unknown = set(raw) - {
        "active",
        "starts_on",
        "ends_on",
        "default_frequency",
        "amounts",
        "variants",
    }
    if unknown:
        raise AppealError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    active = raw.get("active", True)
    if not isinstance(active, bool):
        raise AppealError(f"{where}.active must be true or false")
    frequency = raw.get("default_frequency", "month")
    if frequency not in FREQUENCIES:
        raise AppealError(f"{where}.default_frequency must be once, month or year")
    starts_on = _day(raw.get("starts_on"), f"{where}.starts_on")
    ends_on = _day(raw.get("ends_on"), f"{where}.ends_on")
    if starts_on and ends_on and ends_on < starts_on:
        raise AppealError(f"{where}.ends_on is before starts_on")
    raw_variants = raw.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise AppealError(f"{where} needs at least one [[variants]]")
    if len(raw_variants) > 6:
        raise AppealError(f"{where}: at most 6 variants")
    variants: list[Variant] = []
    for number, item in enumerate(raw_variants, start=1):
        if not isinstance(item, dict):
            raise AppealError(f"{where}.variants[{number}] must be a table")
        key = str(item.get("key") or "")
        place = f"{where}.variants[{number}]"
        if not VARIANT_KEY.fullmatch(key):
            raise AppealError(f"{place}.key: lower-case letters, digits, '-' or '_', at most 20")
        if any(v.key == key for v in variants):
            raise AppealError(f"{place}.key {key!r} is used twice")
        variants.append(
            Variant(
                key=key,
                texts=_texts(item.get("texts"), place, rules),
                amounts=_amounts(item.get("amounts"), f"{place}.amounts", rules),
            )
        )
    return Appeal(
        slug=slug,
        active=active,
        starts_on=starts_on,
        ends_on=ends_on,
        default_frequency=frequency,
        amounts=_amounts(raw.get("amounts"), f"{where}.amounts", rules),
        variants=tuple(variants),
        source=source,
        raw=dict(raw),
    )


def parse_source(slug: str, source: str, rules: Rules) -> Appeal:
    """An appeal from the TOML text an admin wrote (its keys at the top level)."""
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise AppealError(f"the text is not valid TOML: {exc}") from exc
    return parse_appeal(slug, raw, rules, "admin")


def load_configured(path: Path, rules: Rules) -> dict[str, Appeal]:
    """Every appeal in config/appeals.toml (none when the file is missing)."""
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise AppealError(f"{path.name} is not valid TOML: {exc}") from exc
    appeals = {}
    for slug, table in raw.items():
        if not isinstance(table, dict):
            raise AppealError(f"{path.name}: {slug} must be a table ([{slug}])")
        appeals[slug] = parse_appeal(slug, table, rules, "config")
    return appeals


def current_appeals(
    session: Session, configured: Mapping[str, Appeal], rules: Rules
) -> dict[str, Appeal]:
    """The configured appeals with admins' overrides on top. An override that
    no longer validates (the site's currencies changed) is left out, so the
    configured one stands."""
    appeals = dict(configured)
    for row in session.scalars(select(AppealOverride)):
        try:
            appeals[row.slug] = parse_source(row.slug, row.source, rules)
        except AppealError:
            continue
    return dict(sorted(appeals.items()))


def to_toml(raw: Mapping[str, Any], prefix: str = "") -> str:
    """A definition as TOML text, for the admin's editor (tomllib only reads)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, dict) or (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines)
    for key, value in tables:
        name = f"{prefix}.{key}" if prefix else key
        items = value if isinstance(value, list) else [value]
        for item in items:
            header = f"[[{name}]]" if isinstance(value, list) else f"[{name}]"
            body = to_toml(item, name)
            out += f"\n\n{header}" + ("\n" if body and not body.startswith("\n") else "") + body
    return out.strip("\n") if not prefix else out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value)
    if "\n" in text and not CONTROL.search(text.replace("\n", "")):
        escaped = text.replace("\\", "\\\\").replace('"""', '\\"""')
        return f'"""\n{escaped}"""'
    # A JSON string is a TOML basic string (the same escapes).
    return json.dumps(text, ensure_ascii=False)
