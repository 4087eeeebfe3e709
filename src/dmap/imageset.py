"""Images from outside the package for benchmarks, tuning, estimators and analyses: a
folder, a text file listing image paths, or ``photos`` (the photographs bundled in the
scikit-image and scikit-learn wheels).

The set is sorted by path (a list keeps its order) and ``n`` means its first ``n``
images, so a larger set extends a smaller one and image ``i`` keeps its seeds.  Each
image is fitted to the prior: converted to its channels (grey repeated to RGB, colour to
ITU-R BT.601 luma), and, when its size differs, centre-cropped to a square and resized
with antialiasing (bicubic) to ``resolution`` x ``resolution``.  Duplicate files (by
content) and unreadable ones are refused by name."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dmap.data import IMAGE_SUFFIXES, from_unit, list_images, load_image, to_unit

LUMA = (0.299, 0.587, 0.114)

# name: (package, file inside it, licence): natural photographs that the wheels ship
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png", "public domain (NASA; Eileen Collins)"),
    "camera": ("skimage", "data/camera.png", "CC0 (Lav Varshney)"),
    "chelsea": ("skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    "china": ("sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr)"),
    "coffee": ("skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    "flower": ("sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr)"),
    "rocket": ("skimage", "data/rocket.jpg", "public domain (SpaceX)"),
}
PHOTOS_HINT = "pip install 'dmap[photos]' (scikit-image and scikit-learn)"


@dataclass
class ImageSet:
    """Fitted images ``x [N, C, R, R]`` in [-1, 1], their positions ``ids`` (0..N-1), files
    and content hashes, what was done to fit them (``preprocess``) and one-line ``notes``."""

    x: Tensor
    ids: Tensor
    files: list[str]
    hashes: list[str]
    preprocess: str
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> dict:
        """The record a benchmark keeps: each image's path and SHA-256, and the fitting."""
        return {"files": [{"path": p, "sha256": h} for p, h in zip(self.files, self.hashes)], "preprocess": self.preprocess}


def photo_paths() -> list[Path]:
    """The files of ``photos``, sorted by name; ``ValueError`` naming the extra if absent."""
    paths = []
    for name, (package, inside, _) in sorted(PHOTOS.items()):
        spec = importlib.util.find_spec(package)  # (locates the wheel's files without importing it)
        path = Path(spec.submodule_search_locations[0]) / inside if spec and spec.submodule_search_locations else None
        if path is None or not path.is_file():
            raise ValueError(f"--data photos: the photograph {name!r} needs {PHOTOS_HINT}")
        paths.append(path)
    return paths


def image_paths(source: str | Path) -> list[Path]:
    """``photos``, a folder (its image files sorted by name) or a text file of paths (one per
    line, relative to the file's folder; blank lines and ``#`` comments skipped)."""
    if str(source) == "photos":
        return photo_paths()
    p = Path(source)
    if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
        try:
            lines = [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
        except UnicodeDecodeError:
            raise ValueError(f"{p}: neither an image nor a text file listing images") from None
        paths = [p.parent / line for line in lines if line]
        if not paths:
            raise ValueError(f"{p}: lists no image paths")
        missing = next((q for q in paths if not q.is_file()), None)
        if missing:
            raise FileNotFoundError(f"{missing}: no such file (listed in {p})")
        return paths
    return list_images([p])


def fit(x: Tensor, channels: int, size: int) -> tuple[Tensor, list[str]]:
    """``x [C, H, W]`` in [-1, 1] converted to ``channels`` and ``size`` x ``size``; what was done."""
    done = []
    if (x.shape[0], channels) == (1, 3):
        x = x.expand(3, -1, -1)
        done.append("grey repeated to RGB")
    elif (x.shape[0], channels) == (3, 1):
        x = (torch.tensor(LUMA).view(3, 1, 1) * x).sum(0, keepdim=True)
        done.append("colour converted to luma (BT.601)")
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        square = to_unit(x[:, top : top + s, left : left + s])[None]
        x = from_unit(F.interpolate(square, size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1))
        done.append(f"centre-cropped to a square and resized to {size} x {size}")
    return x.contiguous(), done


def image_set(source: str | Path, n: int, shape: tuple[int, ...], resolution: int | None = None) -> ImageSet:
    """The first ``n`` images of ``source`` fitted to a prior of ``shape`` (C, H, W) at
    ``resolution`` (default ``H``).  ``ValueError`` / ``FileNotFoundError`` naming the file
    for too few, unreadable or duplicate images."""
    paths = image_paths(source)
    if n > len(paths):
        raise ValueError(f"{source}: holds {len(paths)} images, {n} asked for")
    channels, size = shape[0], resolution or shape[-1]
    images, hashes, done, notes, seen = [], [], [], [], {}
    for p in paths[:n]:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        if digest in seen:
            raise ValueError(f"{p}: the same image as {seen[digest]}")
        seen[digest] = p
        x, steps = fit(load_image(p, notes), channels, size)
        images.append(x)
        hashes.append(digest)
        done += steps
    preprocess = (
        f"{channels} channel(s): grey repeated, colour to BT.601 luma; centre crop, bicubic antialiased resize to {size} px"
    )
    notes += [f"{done.count(what)} of {n} images: {what}" for what in dict.fromkeys(done)]
    names = [f"photos/{p.name}" if str(source) == "photos" else str(p) for p in paths[:n]]  # (not this machine's site-packages)
    return ImageSet(torch.stack(images), torch.arange(n), names, hashes, preprocess, notes)
