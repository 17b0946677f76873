"""Small inline SVG charts: no plotting library, no external file.

Used by the evaluation report (HTML) and as asset metadata: ``markdown_image`` wraps
a chart in a data URI that the Dagster UI shows in the asset's metadata.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence

PALETTE = ("#3b7dd8", "#d8863b", "#3bb07d", "#9b59b6", "#d83b3b")


def svg_bars(items: Sequence[tuple[str, float, float]], width: int = 560) -> str:
    """Horizontal bars (value, in percent) with a red tick at chance."""
    row_h, label_w = 26, 240
    height = row_h * len(items) + 20
    scale = (width - label_w - 60) / 100
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, (label, value, chance) in enumerate(items):
        y = 10 + i * row_h
        parts.append(f'<text x="0" y="{y + 15}">{html.escape(label[:36])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{max(0.0, value) * scale:.1f}" '
            f'height="16" fill="{PALETTE[0]}"/>'
        )
        x = label_w + chance * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 22}" '
            'stroke="#d83b3b" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{label_w + max(0.0, value) * scale + 4:.1f}" y="{y + 15}">{value:.1f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def svg_lines(
    series: Mapping[str, Sequence[tuple[float, float]]],
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 280,
) -> str:
    """One polyline per named series on shared axes, with a legend; NaN points are dropped."""
    points = {
        name: [(float(x), float(y)) for x, y in values if math.isfinite(float(y))]
        for name, values in series.items()
    }
    points = {name: values for name, values in points.items() if values}
    left, right, top, bottom = 56, 16, 16, 44
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if not points:
        parts.append(f'<text x="{left}" y="{height / 2}">no data yet</text></svg>')
        return "".join(parts)
    xs = [x for values in points.values() for x, _ in values]
    ys = [y for values in points.values() for _, y in values]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    axis = 'stroke="#444" stroke-width="1"'
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" {axis}/>'
    )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" {axis}/>')
    for frac in (0.0, 0.5, 1.0):
        y_value, x_value = y0 + frac * (y1 - y0), x0 + frac * (x1 - x0)
        parts.append(
            f'<text x="{left - 4}" y="{sy(y_value) + 4:.1f}" text-anchor="end">{y_value:.3g}</text>'
        )
        parts.append(_text(sx(x_value), top + plot_h + 14, f"{x_value:.4g}", "middle"))
    parts.append(_text(left + plot_w / 2, height - 6, x_label, "middle"))
    parts.append(
        f'<text x="12" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    for i, (name, values) in enumerate(points.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in values if len(values) < 40 else ():
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>')
        legend_y = top + 12 + 14 * i
        parts.append(
            f'<rect x="{left + plot_w - 150}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{color}"/>'
        )
        parts.append(
            f'<text x="{left + plot_w - 136}" y="{legend_y + 1}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _text(x: float, y: float, content: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{html.escape(content)}</text>'


def markdown_image(svg: str, alt: str) -> str:
    """A Markdown image whose source is the SVG itself, for ``MetadataValue.md``."""
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"
