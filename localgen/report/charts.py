"""Small SVG charts for the HTML report: grouped bars, overlaid histograms, a scatter map.

Each function returns one `<svg>` element as a string, with every text escaped, so the
report stays one self-contained file: no script, no font or image from anywhere else.
Hovering a mark shows its `<title>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

# Tableau 10: distinguishable, and readable by most colour-blind people.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
SERIES = {"real": "#7f7f7f", "synthetic": "#4e79a7"}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" {FONT}>'
        + "".join(body)
        + "</svg>"
    )


def _legend(names: Sequence[str], colors: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for i, (name, c) in enumerate(zip(names, colors, strict=True)):
        out.append(
            f'<rect x="{x}" y="{y + 18 * i}" width="12" height="12" fill="{c}"/>'
            f'<text x="{x + 18}" y="{y + 18 * i + 10}">{escape(name)}</text>'
        )
    return out


def grouped_bars(
    categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str
) -> str:
    """Horizontal bars: one group per category, one bar per series (e.g. real, synthetic)."""
    names = list(series)
    left, bar, gap, width = 150, 14, 10, 640
    height = 40 + len(categories) * (len(names) * bar + gap) + 18 * len(names)
    top = max((max(v, default=0) for v in series.values()), default=0) or 1
    body = [f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    y = 30
    for ci, category in enumerate(categories):
        body.append(
            f'<text x="{left - 6}" y="{y + bar}" text-anchor="end">{escape(category)}</text>'
        )
        for name in names:
            value = series[name][ci]
            w = (width - left - 60) * value / top
            c = SERIES.get(name, color(names.index(name)))
            body.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{c}">'
                f"<title>{escape(category)}, {escape(name)}: {value:g}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}">{value:g}</text>'
            )
            y += bar
        y += gap
    body += _legend(names, [SERIES.get(n, color(i)) for i, n in enumerate(names)], left, y)
    return _svg(width, height, body, title)


def histograms(series: Mapping[str, Sequence[float]], title: str, unit: str, bins: int = 20) -> str:
    """Overlaid histograms on shared bins, as shares of each series (series differ in size)."""
    values = [v for vs in series.values() for v in vs]
    width, height, left, bottom = 640, 240, 40, 40
    body = [f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    if not values:
        return _svg(width, 40, body, title)
    edges = np.histogram_bin_edges(values, bins=bins)
    shares = {}
    for name, vs in series.items():
        counts, _ = np.histogram(vs, bins=edges)
        shares[name] = counts / max(1, len(vs))
    top = max(float(s.max()) for s in shares.values()) or 1.0
    plot_w, plot_h = width - left - 10, height - bottom - 30
    step = plot_w / bins
    for k, (name, share) in enumerate(shares.items()):
        c = SERIES.get(name, color(k))
        for b, s in enumerate(share):
            h = plot_h * s / top
            body.append(
                f'<rect x="{left + b * step:.1f}" y="{30 + plot_h - h:.1f}" width="{step - 1:.1f}" '
                f'height="{h:.1f}" fill="{c}" fill-opacity="0.55">'
                f"<title>{escape(name)}: {s:.1%} of rows with {edges[b]:.0f}-{edges[b + 1]:.0f} "
                f"{escape(unit)}</title></rect>"
            )
    axis_y = 30 + plot_h
    body.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>'
    )
    for b in range(0, bins + 1, max(1, bins // 5)):
        x = left + b * step
        body.append(
            f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{edges[b]:.0f}</text>'
        )
    middle = left + plot_w / 2
    body.append(f'<text x="{middle}" y="{axis_y + 30}" text-anchor="middle">{escape(unit)}</text>')
    names = list(shares)
    body += _legend(names, [SERIES.get(n, color(i)) for i, n in enumerate(names)], width - 110, 20)
    return _svg(width, height, body, title)


def scatter_map(
    points: np.ndarray,
    groups: Sequence[int],
    real: Sequence[bool],
    titles: Sequence[str],
    group_names: Sequence[str],
    title: str,
) -> str:
    """2-D points coloured by group; real points are rings, synthetic points are dots."""
    size, pad = 560, 20
    width = size + 180
    body = [f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    if len(points):
        low, high = points.min(axis=0), points.max(axis=0)
        span = np.where(high - low > 0, high - low, 1.0)
        scaled = (points - low) / span * (size - 2 * pad) + pad
        # Synthetic first, real on top: the real data is what the eye should find.
        order = sorted(range(len(points)), key=lambda i: real[i])
        for i in order:
            x, y = scaled[i]
            c = color(groups[i])
            style = (
                f'r="4.5" fill="none" stroke="{c}" stroke-width="2"'
                if real[i]
                else f'r="2.5" fill="{c}" fill-opacity="0.7"'
            )
            body.append(
                f'<circle cx="{x:.1f}" cy="{y + 20:.1f}" {style}>'
                f"<title>{escape(titles[i])}</title></circle>"
            )
    body += _legend(list(group_names), [color(i) for i in range(len(group_names))], size + 10, 40)
    y = 40 + 18 * len(group_names) + 10
    body.append(
        f'<circle cx="{size + 16}" cy="{y + 6}" r="4.5" fill="none" stroke="#333" '
        'stroke-width="2"/>'
        f'<text x="{size + 28}" y="{y + 10}">real</text>'
        f'<circle cx="{size + 16}" cy="{y + 24}" r="2.5" fill="#333"/>'
        f'<text x="{size + 28}" y="{y + 28}">synthetic</text>'
    )
    return _svg(width, size + 30, body, title)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components, signs fixed so the same data gives the same map."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    centered = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    out = centered @ (components * signs[:, None]).T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
