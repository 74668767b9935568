"""Charts as inline SVG, drawn on the server: no scripts, no downloads, readable offline.

Each function returns :class:`markupsafe.Markup` holding one ``<svg>`` element; every text
it places (labels, titles, legends) is escaped first, so a label holding markup shows as
text. Numbers are formatted by the chart, never taken as markup.

>>> "<svg" in line_chart([1, 2], [("macro-F1", [0.5, 0.6], "#3b7dd8")])
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

FONT = 'font-family="system-ui, sans-serif" font-size="11"'
PALETTE = ("#3b7dd8", "#c9a227", "#2e9e6a", "#c2412d", "#7d5bbe", "#5a6b7b")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= step * m)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for name, color in series:
        parts.append(f'<rect x="{_fmt(x)}" y="{_fmt(y - 8)}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{_fmt(x + 14)}" y="{_fmt(y + 1)}" {FONT}>{escape(name)}</text>')
        x += 24 + 6.5 * len(name)
    return "".join(parts)


def line_chart(xs: Sequence[float | int | str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
               bands: Sequence[Sequence[tuple[float | None, float | None]] | None] = (),
               markers: Sequence[str] = (), width: int = 640, height: int = 240, y_label: str = "",
               y_range: tuple[float, float] | None = None, title: str = "") -> Markup:
    """Lines over categories ``xs``; ``bands`` (per series) draw an interval bar at each point and
    ``markers`` (per x: ``kept``, ``rejected`` or "") fill or hollow the first series' points."""
    left, right, top, bottom = 48, 12, 44, 28
    values = [v for _, vals, _ in series for v in vals if v is not None]
    values += [v for band in bands if band for pair in band for v in pair if v is not None]
    low, high = y_range or ((min(values), max(values)) if values else (0.0, 1.0))
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    pad = (high - low) * 0.08
    low, high = (low, high) if y_range else (low - pad, high + pad)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(xs))

    def px(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def py(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title or y_label)}">']
    for t in _ticks(low, high):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(py(t))}" y2="{_fmt(py(t))}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{_fmt(py(t) + 4)}" text-anchor="end" {FONT}>{t:.3g}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{_fmt(px(i))}" y="{height - 10}" text-anchor="middle" {FONT}>{escape(str(x))}</text>')
    if y_label:
        out.append(f'<text x="4" y="14" {FONT}>{escape(y_label)}</text>')
    for s, (name, vals, color) in enumerate(series):
        band = bands[s] if s < len(bands) else None
        if band:
            for i, (lo, hi) in enumerate(band):
                if lo is not None and hi is not None:
                    out.append(f'<line x1="{_fmt(px(i))}" x2="{_fmt(px(i))}" y1="{_fmt(py(lo))}" '
                               f'y2="{_fmt(py(hi))}" stroke="{color}" stroke-width="6" stroke-opacity="0.25"/>')
        points = [(px(i), py(v)) for i, v in enumerate(vals) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in enumerate(vals):
            if v is None:
                continue
            hollow = s == 0 and i < len(markers) and markers[i] == "rejected"
            out.append(f'<circle cx="{_fmt(px(i))}" cy="{_fmt(py(v))}" r="4" stroke="{color}" stroke-width="2" '
                       f'fill="{"#fff" if hollow else color}"><title>{escape(name)}: {v:.3f}</title></circle>')
    out.append(_legend([(name, color) for name, _, color in series], left, 30))
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(categories: Sequence[str | int], series: Sequence[tuple[str, Sequence[float], str]], *,
              width: int = 640, height: int = 220, y_label: str = "", title: str = "") -> Markup:
    """Grouped vertical bars: one group per category, one bar per series."""
    left, right, top, bottom = 56, 12, 44, 28
    values = [v for _, vals, _ in series for v in vals]
    high = max(values + [0.0]) or 1.0
    ticks = _ticks(0.0, high)
    high = max(high, ticks[-1])
    plot_w, plot_h = width - left - right, height - top - bottom
    group = plot_w / max(1, len(categories))
    bar = group * 0.8 / max(1, len(series))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title or y_label)}">']
    for t in ticks:
        y = top + plot_h * (1 - t / high)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{_fmt(y + 4)}" text-anchor="end" {FONT}>{t:.4g}</text>')
    for c, category in enumerate(categories):
        x0 = left + c * group + group * 0.1
        out.append(f'<text x="{_fmt(left + (c + 0.5) * group)}" y="{height - 10}" text-anchor="middle" {FONT}>'
                   f'{escape(str(category))}</text>')
        for s, (name, vals, color) in enumerate(series):
            v = vals[c]
            h = plot_h * v / high
            out.append(f'<rect x="{_fmt(x0 + s * bar)}" y="{_fmt(top + plot_h - h)}" width="{_fmt(bar * 0.95)}" '
                       f'height="{_fmt(h)}" fill="{color}"><title>{escape(name)}: {v:.4g}</title></rect>')
    if y_label:
        out.append(f'<text x="4" y="14" {FONT}>{escape(y_label)}</text>')
    out.append(_legend([(name, color) for name, _, color in series], left, 30))
    out.append("</svg>")
    return Markup("".join(out))


def diverging_bars(labels: Sequence[str], values: Sequence[float], *, width: int = 640, title: str = "") -> Markup:
    """Horizontal bars left (red) or right (green) of zero, one row per label."""
    row, label_w, top = 18, 190, 8
    height = top * 2 + row * len(labels)
    span = max([abs(v) for v in values] + [0.01])
    mid = label_w + (width - label_w - 50) / 2
    half = (width - label_w - 50) / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<line x1="{_fmt(mid)}" x2="{_fmt(mid)}" y1="{top - 4}" y2="{height - top + 4}" stroke="#999"/>']
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * row
        w = half * abs(v) / span
        x = mid if v >= 0 else mid - w
        color = "#2e9e6a" if v >= 0 else "#c2412d"
        out.append(f'<text x="{label_w - 6}" y="{_fmt(y + 12)}" text-anchor="end" {FONT}>{escape(label)}</text>'
                   f'<rect x="{_fmt(x)}" y="{_fmt(y + 3)}" width="{_fmt(w)}" height="{row - 6}" fill="{color}"/>'
                   f'<text x="{_fmt(mid + half + 4 if v >= 0 else mid - half - 4)}" y="{_fmt(y + 12)}" '
                   f'text-anchor="{"start" if v >= 0 else "end"}" {FONT}>{v:+.3f}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def heatmap(labels: Sequence[str], cells: Sequence[Sequence[object]], *, cell: int = 18, title: str = "") -> Markup:
    """A confusion matrix: rows are true labels, columns predicted; ``cells`` are [true, predicted, count].

    Each row is shaded by its share of the row's records, so labels of different sizes compare.
    """
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for t, p, n in cells:
        if t in index and p in index:
            counts[index[str(t)]][index[str(p)]] += int(n)      # type: ignore[call-overload]
    label_w = int(min(190, 12 + 6.5 * max((len(label) for label in labels), default=1)))
    size = cell * len(labels)
    top = int(label_w * 0.87) + 8                  # room for column labels turned 60 degrees
    width, height = label_w + size + label_w // 2 + 10, top + size + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">']
    for i, label in enumerate(labels):
        y = top + i * cell
        out.append(f'<text x="{label_w - 6}" y="{y + cell - 5}" text-anchor="end" {FONT}>{escape(label)}</text>')
        x = label_w + i * cell + cell - 5
        out.append(f'<text transform="translate({x},{top - 4}) rotate(-60)" {FONT}>{escape(label)}</text>')
        total = sum(counts[i]) or 1
        for j, n in enumerate(counts[i]):
            share = n / total
            color = "#2e9e6a" if i == j else "#c2412d"
            out.append(f'<rect x="{label_w + j * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill="{color if n else "#f4f4f4"}" fill-opacity="{max(share, 0.06) if n else 1:.2f}">'
                       f'<title>{escape(label)} predicted {escape(labels[j])}: {n}</title></rect>')
    out.append("</svg>")
    return Markup("".join(out))
