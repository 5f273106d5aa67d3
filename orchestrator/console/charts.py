"""The learning curve as an inline SVG: metrics of each version against the annotations it
learned from, and its agreement with the previous version (kappa). No JavaScript, no library."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 16, 36
SERIES = (("macro_f1", "macro-F1 (CV)", "#1f77b4"), ("accuracy", "accuracy (CV)", "#2ca02c"),
          ("kappa", "kappa to previous", "#d62728"))


def learning_curve_svg(points: Sequence[dict[str, Any]]) -> SafeString:
    """An SVG plot of `selectors.learning_curve` rows; a sentence when there is nothing to plot."""
    usable = [p for p in points if p.get("annotations") is not None]
    if not any(p.get(key) is not None for p in usable for key, _, _ in SERIES):
        return mark_safe("<p>No trained version has cross-validated metrics yet: the curve starts with the "
                         "first version trained on enough annotations.</p>")
    xs = [p["annotations"] for p in usable]
    low, high = min(xs), max(xs)
    span = max(1, high - low)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(value: float) -> float:
        return LEFT + (value - low) / span * plot_w if high > low else LEFT + plot_w / 2

    def y_of(value: float) -> float:
        return TOP + (1 - max(0.0, min(1.0, value))) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="alo-learning-curve" width="{WIDTH}" '
             f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="learning curve">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick:.2f}</text>')
    for value in sorted({low, high, *(xs[:: max(1, len(xs) // 6)])}):
        x = x_of(value)
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle">{value}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" font-size="12" text-anchor="middle">'
                 'annotations used</text>')
    for row, (key, label, colour) in enumerate(SERIES):
        known = [(p["annotations"], p[key], p) for p in usable if p.get(key) is not None]
        if known:
            path = " ".join(f"{x_of(a):.1f},{y_of(v):.1f}" for a, v, _ in known)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            for a, v, p in known:
                title = escape(f"{p.get('version')}: {label} {v:.3f} at {a} annotations")
                parts.append(f'<circle cx="{x_of(a):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}">'
                             f'<title>{title}</title></circle>')
        y = TOP + 10 + row * 18
        parts.append(f'<line x1="{LEFT + plot_w + 12}" y1="{y}" x2="{LEFT + plot_w + 30}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{LEFT + plot_w + 34}" y="{y + 4}" font-size="11">{label}</text>')
    stops = [p for p in usable if p.get("stop_suggested")]
    if stops:
        x = x_of(stops[0]["annotations"])
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#999" '
                     f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{TOP + 12}" font-size="11" fill="#555">'
                     'stop suggested</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
