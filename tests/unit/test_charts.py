"""app.finance.charts: a server-rendered SVG of monthly bars and a line, with the
same numbers as a table, accessible and without scripts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import pairwise

from app.finance.charts import HEIGHT, MARGIN_BOTTOM, MARGIN_TOP, Point, bar_line_chart
from app.money import format_money

SVG = "{http://www.w3.org/2000/svg}"


def render(points: list[Point], **kwargs: str) -> str:
    return str(
        bar_line_chart(
            points,
            title=kwargs.get("title", "Monthly gross and net in USD"),
            bar_name="Gross",
            line_name="Net",
            fmt=lambda minor: format_money(minor, "usd"),
            chart_id=kwargs.get("chart_id", "chart-usd"),
        )
    )


def svg_of(html: str) -> ET.Element:
    match = re.search(r"<svg.*?</svg>", html, re.S)
    assert match
    return ET.fromstring(match.group(0))


POINTS = [Point("2026-08", 2500, 2300), Point("2026-09", 10000, -500), Point("2026-10", 0, 0)]


def test_the_chart_has_a_title_a_description_and_a_role_for_screen_readers() -> None:
    svg = svg_of(render(POINTS))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-usd-title chart-usd-desc"
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text == "Monthly gross and net in USD"
    assert svg.find(f"{SVG}desc") is not None


def test_the_table_beside_the_chart_holds_the_same_numbers() -> None:
    html = render(POINTS)
    rows = re.findall(
        r'<tr><th scope="row">([^<]+)</th><td class="num">([^<]+)</td><td class="num">([^<]+)</td></tr>',
        html,
    )
    assert rows == [
        ("2026-08", "$25.00", "$23.00"),
        ("2026-09", "$100.00", "-$5.00"),
        ("2026-10", "$0.00", "$0.00"),
    ]


def test_bars_are_proportional_and_a_negative_value_goes_below_the_axis() -> None:
    svg = svg_of(render(POINTS))
    bars = svg.findall(f"{SVG}rect")
    assert len(bars) == 3
    heights = [float(bar.get("height", "0")) for bar in bars]
    assert heights[1] == max(heights)
    assert abs(heights[0] / heights[1] - 0.25) < 0.01
    assert heights[2] == 0
    axis = svg.find(f"{SVG}line")
    assert axis is not None
    zero = float(axis.get("y1", "0"))
    assert MARGIN_TOP <= zero <= HEIGHT - MARGIN_BOTTOM
    dots = svg.findall(f"{SVG}circle")
    assert float(dots[1].get("cy", "0")) > zero  # the negative net is drawn below zero
    assert svg.find(f"{SVG}polyline") is not None


def test_each_mark_names_its_month_and_amount_on_hover() -> None:
    svg = svg_of(render(POINTS))
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert "2026-09: Gross $100.00" in titles
    assert "2026-09: Net -$5.00" in titles


def test_text_is_escaped_and_there_is_no_script() -> None:
    html = render(POINTS, title="<script>alert(1)</script>", chart_id='x" onload="y')
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert 'onload="y' not in html


def test_an_empty_series_and_all_zero_values_still_render() -> None:
    assert "<svg" in render([])
    svg = svg_of(render([Point("2026-10", 0, 0)]))
    assert svg.findall(f"{SVG}rect")[0].get("height") == "0.0"


def test_the_value_axis_has_ticks_with_formatted_amounts_at_their_heights() -> None:
    svg = svg_of(render(POINTS))
    ticks = svg.findall(f"{SVG}g[@class='ticks']/{SVG}text")
    labels = [t.text for t in ticks]
    assert "$0.00" in labels
    assert "$100.00" in labels or "$120.00" in labels  # the top reaches the largest bar
    assert any(label and label.startswith("-$") for label in labels)  # below zero too
    assert len(ticks) >= 3
    # Ticks are evenly spaced, from the largest amount at the top down.
    ys = [float(t.get("y", "0")) for t in ticks]
    assert ys == sorted(ys)
    gaps = {round(b - a) for a, b in pairwise(ys)}
    assert len(gaps) == 1
    axis = svg.find(f"{SVG}line")
    assert axis is not None
    zero_tick = ticks[labels.index("$0.00")]
    assert abs(float(zero_tick.get("y", "0")) - float(axis.get("y1", "0"))) < 5


def test_the_chart_has_a_legend_naming_both_series() -> None:
    svg = svg_of(render(POINTS))
    legend = svg.find(f"{SVG}g[@class='legend']")
    assert legend is not None
    assert [t.text for t in legend.findall(f"{SVG}text")] == ["Gross", "Net"]
    assert legend.find(f"{SVG}rect[@class='bar swatch']") is not None
    assert legend.find(f"{SVG}line[@class='line swatch']") is not None
