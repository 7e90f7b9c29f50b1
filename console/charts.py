"""Charts as inline SVG: no script, no image request, readable with JavaScript off.

Each function is pure (numbers in, markup out), scales from zero, and carries a
``<title>`` and ``<desc>`` so screen readers get the figures too; pages show the same
numbers in a table beside the chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["PALETTE", "bar_chart", "line_chart", "sparkline"]

# Colour-blind-safe palette (Okabe-Ito), then greys.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#7f7f7f",
    "#bcbcbc",
)


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^k at or above ``value`` (axis top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        top = step * 10.0**exp
        if top >= value:
            return top
    return 10.0 ** (exp + 1)


def _label(value: float, *, percent: bool) -> str:
    if percent:
        return f"{100 * value:.0f}%"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M".replace(".0M", "M")
    if value >= 1e3:
        return f"{value / 1e3:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def sparkline(values: Sequence[float], *, title: str, width: int = 120, height: int = 28) -> Markup:
    """A small line of values in [0, 1] (e.g. a tag's coverage over runs), newest last."""
    pad = 3
    if not values:
        return Markup("")
    n = len(values)
    xs = [pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5) for i in range(n)]
    ys = [height - pad - (height - 2 * pad) * min(max(v, 0.0), 1.0) for v in values]
    points = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in zip(xs, ys, strict=True))
    desc = ", ".join(f"{100 * v:.1f}%" for v in values)
    # Every text below is escaped; numbers are formatted here.
    return Markup(  # noqa: S704
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"<desc>{escape(desc)}</desc>"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#ccc" stroke-width="1"/>'
        f'<polyline points="{points}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>'
        f'<circle cx="{_fmt(xs[-1])}" cy="{_fmt(ys[-1])}" r="2.2" fill="{PALETTE[0]}"/>'
        "</svg>"
    )


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    percent: bool = False,
    width: int = 640,
    height: int = 260,
) -> Markup:
    """Several series over the same x labels, with a zero-based y axis and a legend.

    Args:
        x_labels: One label per point (e.g. as-of dates), oldest first.
        series: (name, values) pairs, one value per x label.
        title: What the chart shows (also its accessible name).
        percent: Values are shares in [0, 1]; ticks read as percentages.
        width: Width in pixels.
        height: Height in pixels (the legend adds rows below).
    """
    left, right, top, bottom = 56, 16, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(x_labels)
    peak = max((max(vals) for _, vals in series if len(vals)), default=0.0)
    y_top = _nice_max(peak)
    legend_rows = math.ceil(len(series) / 3)
    total_h = height + 18 * legend_rows

    def x_at(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h - plot_h * (v / y_top)

    parts = [
        f'<svg class="chart" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    desc = "; ".join(
        f"{name}: " + ", ".join(_label(v, percent=percent) for v in vals) for name, vals in series
    )
    parts.append(f"<desc>{escape(desc)}</desc>")
    for k in range(5):
        v = y_top * k / 4
        y = y_at(v)
        parts.append(
            f'<line x1="{left}" y1="{_fmt(y)}" x2="{width - right}" y2="{_fmt(y)}" '
            f'stroke="{"#999" if k == 0 else "#e6e6e6"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="#555">{_label(v, percent=percent)}</text>'
        )
    step = max(1, math.ceil(n / 8))
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            parts.append(
                f'<text x="{_fmt(x_at(i))}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="11" fill="#555">{escape(label)}</text>'
            )
    for idx, (name, vals) in enumerate(series):
        colour = PALETTE[idx % len(PALETTE)]
        pts = [(x_at(i), y_at(v)) for i, v in enumerate(vals)]
        if len(pts) > 1:
            joined = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in pts)
            parts.append(
                f'<polyline points="{joined}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y in pts:
            parts.append(f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="3" fill="{colour}"/>')
        lx = left + (idx % 3) * (plot_w / 3)
        ly = height + 18 * (idx // 3) + 4
        parts.append(
            f'<rect x="{_fmt(lx)}" y="{ly}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_fmt(lx + 14)}" y="{ly + 9}" font-size="12" fill="#222">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text is escaped above


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    percent: bool = False,
    width: int = 640,
    bar_height: int = 22,
) -> Markup:
    """Horizontal bars, one per (label, value), scaled from zero."""
    label_w, pad, value_w = 200, 6, 70
    plot_w = width - label_w - value_w - 2 * pad
    height = max(1, len(items)) * (bar_height + pad) + pad
    peak = max((v for _, v in items), default=0.0) or 1.0
    desc = ", ".join(f"{name}: {_label(v, percent=percent)}" for name, v in items)
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"<desc>{escape(desc)}</desc>"
    ]
    for i, (name, value) in enumerate(items):
        y = pad + i * (bar_height + pad)
        w = plot_w * max(value, 0.0) / peak
        parts.append(
            f'<text x="{label_w - pad}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'font-size="12" fill="#222">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{_fmt(w)}" height="{bar_height}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{_fmt(label_w + w + pad)}" y="{y + bar_height * 0.7:.1f}" '
            f'font-size="12" fill="#222">{_label(value, percent=percent)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text is escaped above
