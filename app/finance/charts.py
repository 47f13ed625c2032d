"""Small server-rendered SVG charts for the finance pages: bars of monthly
gross with a line of monthly net, for one currency.

No JavaScript and nothing fetched at run time. Accessible: the SVG has a
<title> and <desc>, and the same numbers come as a table beside it. Takes
integers (minor units) and a formatter; never adds different currencies.
No Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 240
MARGIN_LEFT = 12
MARGIN_RIGHT = 12
MARGIN_TOP = 16
MARGIN_BOTTOM = 28


@dataclass(frozen=True)
class Point:
    label: str  # e.g. "2026-11"
    bar: int  # minor units (gross)
    line: int  # minor units (net)


def _scale(low: int, high: int, top: float, bottom: float) -> Callable[[int], float]:
    span = high - low or 1

    def y(value: int) -> float:
        return bottom - (value - low) * (bottom - top) / span

    return y


def bar_line_chart(
    points: Sequence[Point],
    *,
    title: str,
    bar_name: str,
    line_name: str,
    fmt: Callable[[int], str],
    chart_id: str,
) -> Markup:
    """An SVG of bars (`bar`) and a line (`line`) per point, with its table.
    `fmt` turns minor units into text; `chart_id` makes the ids unique."""
    cid = escape(chart_id)
    values = [p.bar for p in points] + [p.line for p in points]
    low, high = min([0, *values]), max([0, *values])
    plot_top, plot_bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    y = _scale(low, high, plot_top, plot_bottom)
    zero = y(0)
    slot = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / max(len(points), 1)
    bar_width = slot * 0.6

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{cid}-title {cid}-desc" class="chart">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(bar_name)} as bars and {escape(line_name)} as a line, '
        f"per month; the table beside the chart has the same numbers.</desc>",
        f'<line class="axis" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
        f'y1="{zero:.1f}" y2="{zero:.1f}"/>',
    ]
    line_points = []
    for n, point in enumerate(points):
        x = MARGIN_LEFT + n * slot + (slot - bar_width) / 2
        top = min(y(point.bar), zero)
        height = abs(y(point.bar) - zero)
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{bar_width:.1f}" '
            f'height="{height:.1f}"><title>{escape(point.label)}: {escape(bar_name)} '
            f"{escape(fmt(point.bar))}</title></rect>"
        )
        centre = MARGIN_LEFT + n * slot + slot / 2
        line_points.append(f"{centre:.1f},{y(point.line):.1f}")
        parts.append(
            f'<text class="label" x="{centre:.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="middle">{escape(point.label[-2:])}</text>'
        )
    if line_points:
        parts.append(f'<polyline class="line" points="{" ".join(line_points)}"/>')
        for n, point in enumerate(points):
            cx, cy = line_points[n].split(",")
            parts.append(
                f'<circle class="dot" cx="{cx}" cy="{cy}" r="3"><title>{escape(point.label)}: '
                f"{escape(line_name)} {escape(fmt(point.line))}</title></circle>"
            )
    parts.append("</svg>")

    rows = "".join(
        f'<tr><th scope="row">{escape(p.label)}</th><td class="num">{escape(fmt(p.bar))}</td>'
        f'<td class="num">{escape(fmt(p.line))}</td></tr>'
        for p in points
    )
    table = (
        f'<table class="data chart-table" aria-describedby="{cid}-title"><thead><tr>'
        f'<th scope="col">Month</th><th scope="col" class="num">{escape(bar_name)}</th>'
        f'<th scope="col" class="num">{escape(line_name)}</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    return Markup(  # noqa: S704 (every interpolated text above is escaped)
        f'<figure class="chart-figure"><div class="chart-svg">{"".join(parts)}</div>'
        f'<div class="table-wrap">{table}</div></figure>'
    )
