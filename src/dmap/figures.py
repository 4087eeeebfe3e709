"""Figures: labelled image grids (Pillow) and plots (matplotlib, headless Agg backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from dmap.data import to_uint8


def grid(
    rows: Sequence[Sequence[Tensor]],
    path: str | Path,
    *,
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    cell: int = 64,
    pad: int = 2,
) -> None:
    """Save a grid of images (each ``[C, H, W]`` in [-1, 1], any size: nearest-neighbour
    scaled to ``cell`` pixels) with optional labels left of the rows and above the columns."""
    from PIL import Image, ImageDraw

    n_cols = max(len(r) for r in rows)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 8 + round(max((measure.textlength(s) for s in row_labels), default=-8))
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


def _axes(title: str, xlabel: str, ylabel: str, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110, layout="constrained")
    ax.set_title(textwrap.fill(title, width=int(11 * size[0])), fontsize=10)  # (a long title wraps instead of being cut)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = False,
    log_y: bool = False,
    size: tuple[float, float] = (6.4, 4.0),
) -> None:
    """Lines with markers, one per ``series`` entry (name -> ``(xs, ys)``), with a legend;
    non-finite points are left out."""
    import math

    fig, ax = _axes(title, xlabel, ylabel, size)
    for name, (xs, ys) in series.items():
        pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not log_y)]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, label=name)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    if series:
        ax.legend(fontsize=8)
    _save(fig, path)


def bar_chart(
    values: dict[str, float] | dict[str, dict[str, float]],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "",
    size: tuple[float, float] | None = None,
) -> None:
    """Bars with their values printed on them: ``values`` maps a name to a value, or a
    group name to ``{series: value}`` (grouped bars, one colour per series, a legend)."""
    import numpy as np

    grouped = any(isinstance(v, dict) for v in values.values())
    groups = values if grouped else {"": values}
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    fig, ax = _axes(title, "", ylabel, size or (max(5.0, 1.0 + 0.45 * len(series) * len(groups)), 3.8))
    width = 0.8 / len(series) if grouped else 0.6
    x = np.arange(len(groups))
    for j, key in enumerate(series):
        if grouped:
            vals = [g.get(key, float("nan")) for g in groups.values()]
            bars = ax.bar(x + (j - (len(series) - 1) / 2) * width, vals, width, label=key)
        else:
            vals = list(values.values())
            bars = ax.bar(np.arange(len(vals)), vals, width)
            ax.set_xticks(np.arange(len(vals)), list(values), fontsize=8)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        if not grouped:
            break
    ax.margins(y=0.12)  # room above the tallest bar for its label
    if grouped:
        ax.set_xticks(x, list(groups), fontsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes, never over a bar
    _save(fig, path)
