"""Figures drawn with Pillow alone: labelled grids of images in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from dmap.data import to_uint8


def grid(
    rows: Sequence[Sequence[Tensor]], path: str | Path, *, row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (), cell: int = 64, pad: int = 2,
) -> None:
    """Save a grid of images (each ``[C, H, W]`` in [-1, 1], any size: nearest-neighbour
    scaled to ``cell`` pixels) with optional labels left of the rows and above the columns."""
    from PIL import Image, ImageDraw

    n_cols = max(len(r) for r in rows)
    left = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    top = 16 if col_labels else 0
    canvas = Image.new("RGB", (left + n_cols * (cell + pad) + pad, top + len(rows) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(col_labels):
        draw.text((left + pad + j * (cell + pad), 2), label, fill="black")
    for i, row in enumerate(rows):
        y0 = top + pad + i * (cell + pad)
        if i < len(row_labels):
            draw.text((4, y0 + cell // 2 - 6), row_labels[i], fill="black")
        for j, img in enumerate(row):
            h, w = img.shape[-2:]
            size = (max(1, round(cell * w / max(h, w))), max(1, round(cell * h / max(h, w))))
            tile = Image.fromarray(to_uint8(img)).convert("RGB").resize(size, Image.NEAREST)
            canvas.paste(tile, (left + pad + j * (cell + pad), y0))
    canvas.save(path)


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, title: str = "",
    xlabel: str = "", ylabel: str = "", log_y: bool = False, size: tuple[int, int] = (560, 360),
) -> None:
    """A line plot with a legend, drawn with Pillow: ``series`` maps a name to ``(xs, ys)``;
    non-finite and (with ``log_y``) non-positive points are skipped."""
    import math

    from PIL import Image, ImageDraw

    W, H = size
    left, right, top, bottom = 64, 150, 28, 40
    pts = {k: [(x, y) for x, y in zip(*v) if math.isfinite(y) and (y > 0 or not log_y)] for k, v in series.items()}
    xs = [x for p in pts.values() for x, _ in p] or [0.0, 1.0]
    ys = [math.log10(y) if log_y else y for p in pts.values() for _, y in p] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float, y: float) -> tuple[float, float]:
        v = math.log10(y) if log_y else y
        return (left + (x - x0) / (x1 - x0) * (W - left - right), top + (1 - (v - y0) / (y1 - y0)) * (H - top - bottom))

    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for i in range(5):
        fy = y0 + (y1 - y0) * i / 4
        yy = top + (1 - i / 4) * (H - top - bottom)
        d.text((4, yy - 6), f"{10 ** fy:.3g}" if log_y else f"{fy:.3g}", fill="black")
        fx = x0 + (x1 - x0) * i / 4
        d.text((left + i / 4 * (W - left - right) - 10, H - bottom + 4), f"{fx:.4g}", fill="black")
    d.text((left, 8), title, fill="black")
    d.text(((W - right + left) // 2 - 20, H - 16), xlabel, fill="black")
    d.text((4, top - 20), ylabel, fill="black")
    for i, (name, p) in enumerate(pts.items()):
        color = COLORS[i % len(COLORS)]
        if len(p) > 1:
            d.line([px(x, y) for x, y in p], fill=color, width=2)
        for x, y in p:
            cx, cy = px(x, y)
            d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=color)
        d.line([W - right + 10, top + 10 + 16 * i, W - right + 30, top + 10 + 16 * i], fill=color, width=3)
        d.text((W - right + 34, top + 4 + 16 * i), name, fill="black")
    im.save(path)


def bar_chart(values: dict[str, float] | dict[str, dict[str, float]], path: str | Path, *, title: str = "",
              ylabel: str = "", size: tuple[int, int] | None = None) -> None:
    """A bar chart with the value printed above each bar, drawn with Pillow.  ``values``
    maps a name to a value, or a group name to ``{series: value}`` (grouped bars, one
    colour per series, with a legend)."""
    from PIL import Image, ImageDraw

    grouped = any(isinstance(v, dict) for v in values.values())
    groups = values if grouped else {"": values}
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    n_bars = sum(len(g) for g in groups.values()) + len(groups) - 1  # a gap between groups
    W, H = size or (max(480, 60 + 34 * n_bars + 120 * grouped), 320)
    left, right, top, bottom = 48, 120 * grouped + 8, 36, 36
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    finite = [v for g in groups.values() for v in g.values() if v == v]
    lo = min(0.0, min(finite, default=0.0))
    hi = max(finite + [1e-12])
    width = (W - left - right) / max(1, n_bars)
    d.line([left, H - bottom, W - right, H - bottom], fill="black")
    d.text((left, 8), title, fill="black")
    d.text((4, top - 16), ylabel, fill="black")
    i = 0
    for name, group in groups.items():
        first = i
        for key, v in group.items():
            x0 = left + i * width + width * 0.1
            h = 0 if v != v else (v - lo) / (hi - lo) * (H - top - bottom)
            color = COLORS[series.index(key) % len(COLORS)]
            d.rectangle([x0, H - bottom - h, x0 + width * 0.8, H - bottom], fill=color)
            d.text((x0, H - bottom - h - 14), f"{v:.3g}", fill="black")
            if not grouped:
                d.text((x0, H - bottom + 6), key, fill="black")
            i += 1
        if grouped:
            d.text((left + first * width, H - bottom + 6), name, fill="black")
        i += 1
    if grouped:
        for j, key in enumerate(series):
            d.rectangle([W - right + 10, top + 16 * j, W - right + 24, top + 16 * j + 10], fill=COLORS[j % len(COLORS)])
            d.text((W - right + 28, top - 2 + 16 * j), key, fill="black")
    im.save(path)
