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
