"""The appeals' core: definitions and their one-line errors, the TOML the
editor shows, safe Markdown, article ids, tracked links, the monthly
equivalent and the Wilson interval."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from app.appeals.definitions import (
    AppealError,
    Rules,
    load_configured,
    parse_appeal,
    parse_source,
    to_toml,
)
from app.appeals.funnel import ratio_bp, wilson_interval
from app.appeals.links import normalise_article, tracked_url
from app.appeals.markup import render_markdown
from app.appeals.nudge import monthly_equivalent

ROOT = Path(__file__).resolve().parents[2]
RULES = Rules(
    ("usd", "eur", "jpy"),
    {code: {"min": 100, "max": 1_000_000} for code in ("usd", "eur", "gbp", "jpy")},
    ("en", "ru"),
)


def variant(**texts: Any) -> dict[str, Any]:
    return {"key": "a", "texts": texts or {"en": {"headline": "H", "body": "B"}}}


def test_the_support_appeal_ships_with_english_and_russian_texts_monthly_by_default() -> None:
    appeals = load_configured(ROOT / "config" / "appeals.toml", RULES)
    support = appeals["support"]
    assert support.default_frequency == "month"
    assert [v.key for v in support.variants] == ["a", "b"]
    first = support.variants[0]
    assert first.text("ru", "en").headline == "Независимая журналистика жива."
    assert first.text("de", "en").headline == "Independent journalism isn't dead."
    assert support.amounts_for(first, "usd", "month", {}) == (500, 1_000, 2_000)
    assert support.amounts_for(first, "jpy", "once", {"jpy": {"once": [1_000]}}) == (1_000,)


def test_what_the_editor_shows_reads_back_as_the_same_appeal() -> None:
    support = load_configured(ROOT / "config" / "appeals.toml", RULES)["support"]
    again = parse_source("support", to_toml(support.raw), RULES)
    assert (again.variants, again.amounts, again.default_frequency) == (
        support.variants,
        support.amounts,
        support.default_frequency,
    )


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"variants": []}, "needs at least one [[variants]]"),
        ({"variants": [variant()], "default_frequency": "weekly"}, "default_frequency"),
        ({"variants": [variant()], "starts_on": "2026-13-01"}, "starts_on"),
        ({"variants": [variant()], "starts_on": "2026-12-02", "ends_on": "2026-12-01"}, "ends_on"),
        ({"variants": [variant()], "amounts": {"chf": {"once": [500]}}}, "amounts.chf"),
        ({"variants": [variant()], "amounts": {"usd": {"once": [50]}}}, "outside the currency"),
        ({"variants": [variant()], "amounts": {"jpy": {"once": [1.5]}}}, "whole numbers"),
        ({"variants": [variant(de={"headline": "H"})]}, "texts.de"),
        ({"variants": [variant(en={"headline": ""})]}, "headline is empty"),
        ({"variants": [variant(), variant()]}, "used twice"),
        ({"variants": [variant()], "colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_a_bad_definition_is_one_line_naming_the_field(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(AppealError, match=named.replace("[", r"\[").replace("]", r"\]")) as caught:
        parse_appeal("spring", raw, RULES, "admin")
    assert "\n" not in str(caught.value)


def test_an_appeal_is_live_only_when_active_and_within_its_days() -> None:
    raw = {"variants": [variant()], "starts_on": "2026-12-01", "ends_on": "2026-12-31"}
    appeal = parse_appeal("winter", raw, RULES, "config")
    assert not appeal.live_on(date(2026, 11, 30))
    assert appeal.live_on(date(2026, 12, 1)) and appeal.live_on(date(2026, 12, 31))
    assert not appeal.live_on(date(2027, 1, 1))
    assert not parse_appeal("off", {"variants": [variant()], "active": False}, RULES, "x").live_on(
        date(2026, 12, 1)
    )


def test_markdown_becomes_safe_html_whose_links_open_at_the_top() -> None:
    html = str(
        render_markdown(
            "**Give** <script>alert(1)</script> [us](https://news.example.org) "
            "[x](javascript:alert(1)) <img src=x onerror=alert(1)>"
        )
    )
    assert "<strong>Give</strong>" in html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert 'href="https://news.example.org" target="_top" rel="noopener noreferrer"' in html


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (
            "https://News.Example.org/2026/12/story/?utm_source=x#top",
            "news.example.org/2026/12/story",
        ),
        ("  article-42 ", "article-42"),
        ("a\x00b", "ab"),
        ("x" * 300, "x" * 100),
        (None, ""),
    ],
)
def test_an_article_is_kept_without_scheme_query_fragment_or_excess(
    given: str | None, kept: str
) -> None:
    assert normalise_article(given) == kept


def test_a_tracked_link_carries_its_attribution_and_amount() -> None:
    assert tracked_url(
        "https://donate.example.org/",
        campaign="spring",
        source="newsletter",
        medium="email",
        amount_minor=1_000,
        currency="eur",
        frequency="month",
    ) == (
        "https://donate.example.org/donate?amount=10.00&currency=eur&frequency=month"
        "&campaign=spring&utm_source=newsletter&utm_medium=email"
    )


@pytest.mark.parametrize(
    ("once", "presets", "monthly"),
    [
        (3_000, [], 1_000),  # $30 once, or $10 every month
        (2_500, [], 800),  # 8.33 rounds to a whole unit
        (4_500, [1_500], 1_500),
        (100, [], None),  # under the smallest gift
        (250, [], 100),
    ],
)
def test_the_monthly_equivalent_is_a_third_in_whole_units_within_the_limits(
    once: int, presets: list[int], monthly: int | None
) -> None:
    assert monthly_equivalent(once, 3, {"min": 100, "max": 1_000_000}, presets) == monthly


def test_the_wilson_interval_brackets_the_rate_and_narrows_with_more_trials() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 100) or (0, 0)
    assert (low, high) == (552, 1744)  # 5.5 % to 17.4 % around 10 %
    wide = wilson_interval(1, 10) or (0, 0)
    narrow = wilson_interval(100, 1_000) or (0, 0)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert wilson_interval(0, 1_000) == (0, 39)
    assert ratio_bp(1, 3) == 3_333 and ratio_bp(1, 0) is None
