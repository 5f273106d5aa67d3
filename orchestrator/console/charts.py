"""The learning curve as an inline SVG: metrics of each version against the annotations it
learned from, and its agreement with the previous version (kappa). No JavaScript, no library."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 270, 16, 36
# The audit estimate (unbiased, with its 90% interval as a band) first; cross-validation on the
# labelled set stays visible, dashed and named for what it is.
SERIES = (("estimate", "macro-F1, audit estimate (90% band)", "#1f77b4", ""),
          ("macro_f1", "macro-F1 on the labelled set (biased)", "#9ecae1", "5 3"),
          ("accuracy", "accuracy on the labelled set (biased)", "#a1d99b", "5 3"),
          ("kappa", "kappa to previous", "#d62728", ""))
NOTE = ("The audit estimate is measured on tasks drawn at random and never trained on. Cross-validation "
        "on the labelled set is biased toward the hard tasks the queue picks: it can fall while the model improves.")


def learning_curve_svg(points: Sequence[dict[str, Any]]) -> SafeString:
    """An SVG plot of `selectors.learning_curve` rows; a sentence when there is nothing to plot."""
    usable = [p for p in points if p.get("annotations") is not None]
    if not any(p.get(key) is not None for p in usable for key, _, _, _ in SERIES):
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
    banded = [p for p in usable if p.get("estimate_low") is not None and p.get("estimate_high") is not None]
    if banded:
        upper = [f"{x_of(p['annotations']):.1f},{y_of(p['estimate_high']):.1f}" for p in banded]
        lower = [f"{x_of(p['annotations']):.1f},{y_of(p['estimate_low']):.1f}" for p in reversed(banded)]
        parts.append(f'<polygon class="alo-estimate-band" fill="#1f77b4" fill-opacity="0.15" stroke="none" '
                     f'points="{" ".join(upper + lower)}"/>')
    for row, (key, label, colour, dashes) in enumerate(SERIES):
        known = [(p["annotations"], p[key], p) for p in usable if p.get(key) is not None]
        if known:
            path = " ".join(f"{x_of(a):.1f},{y_of(v):.1f}" for a, v, _ in known)
            dash = f' stroke-dasharray="{dashes}"' if dashes else ""
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{path}"/>')
            for a, v, p in known:
                said = f"{label} {v:.3f} at {a} annotations"
                if key == "estimate" and p.get("estimate_low") is not None:
                    said += (f" (90% interval {p['estimate_low']:.3f}-{p['estimate_high']:.3f}, "
                             f"{int(p.get('audit_labels') or 0)} audit labels)")
                title = escape(f"{p.get('version')}: {said}")
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
    return mark_safe("".join(parts) + f'<p class="help">{escape(NOTE)}</p>')
