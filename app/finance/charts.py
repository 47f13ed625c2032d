"""Small server-rendered SVG charts for the finance pages: bars of monthly
gross with a line of monthly net, for one currency, with a value axis (ticks
at round amounts, formatted) and a legend.

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
MARGIN_LEFT = 84  # room for the value axis' labels
MARGIN_RIGHT = 12
MARGIN_TOP = 30  # room for the legend
MARGIN_BOTTOM = 28
TICKS = 4  # about this many steps between the lowest and the highest tick


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


def tick_step(span: int, ticks: int = TICKS) -> int:
    """A round step (1, 2 or 5 times a power of ten, in minor units) that
    covers `span` in about `ticks` steps."""
    wanted = max(1, -(-span // ticks))
    power = 1
    while True:
        for factor in (1, 2, 5):
            if factor * power >= wanted:
                return factor * power
        power *= 10


def axis_range(low: int, high: int) -> tuple[int, int, int]:
    """(bottom, top, step): the range widened to whole steps, zero included."""
    step = tick_step(high - low or 1)
    bottom = (low // step) * step
    top = -((-high) // step) * step
    if top == bottom:
        top = bottom + step
    return bottom, top, step


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
    low, high, step = axis_range(min([0, *values]), max([0, *values]))
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
    # The value axis: a gridline and a formatted amount at each round step.
    ticks = ['<g class="ticks">']
    for value in range(high, low - 1, -step):
        at = y(value)
        ticks.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y1="{at:.1f}" y2="{at:.1f}"/>'
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{at + 4:.1f}" '
            f'text-anchor="end">{escape(fmt(value))}</text>'
        )
    ticks.append("</g>")
    parts += ticks
    parts.append(
        f'<g class="legend"><rect class="bar swatch" x="{MARGIN_LEFT}" y="6" width="12" '
        f'height="12"/><text class="label" x="{MARGIN_LEFT + 16}" y="16">{escape(bar_name)}</text>'
        f'<line class="line swatch" x1="{MARGIN_LEFT + 90}" x2="{MARGIN_LEFT + 110}" y1="12" '
        f'y2="12"/><text class="label" x="{MARGIN_LEFT + 114}" y="16">{escape(line_name)}</text>'
        "</g>"
    )
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
