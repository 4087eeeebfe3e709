"""Bundled MNIST digits and image I/O: the only place where [-1, 1] meets [0, 1] / uint8."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
SPLITS = {"train": (0.0, 0.9), "validation": (0.9, 0.95), "test": (0.95, 1.0)}


@cache
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("dmap.assets").joinpath("mnist.npz").open("rb") as f:
        data = np.load(f)
        return data["images"], data["labels"]


def mnist_indices(split: str) -> np.ndarray:
    """Indices into the bundled file for ``split``: per class, in file order, the first
    90 % are ``train`` (the priors, the CSE adapters and ``dmap tune`` see these), the
    next 5 % ``validation`` (checks of presets, diagnostics), the last 5 % ``test``
    (reported numbers only).  Disjoint; together the whole file."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    lo, hi = SPLITS[split]
    _, labels = _mnist_raw()
    out = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        out.append(idx[int(round(lo * len(idx))) : int(round(hi * len(idx)))])
    return np.sort(np.concatenate(out))


def mnist(split: str) -> tuple[Tensor, Tensor]:
    """The bundled digits of ``split``: images ``[N, 1, 32, 32]`` float32 in [-1, 1]
    (28 x 28 padded by 2 px of background) and int64 labels."""
    images, labels = _mnist_raw()
    idx = mnist_indices(split)
    x = torch.from_numpy(np.pad(images[idx], ((0, 0), (2, 2), (2, 2)))).float()
    return (x / 127.5 - 1).unsqueeze(1), torch.from_numpy(labels[idx].astype(np.int64))


def mnist_spread(n: int, split: str = "test") -> tuple[Tensor, Tensor]:
    """``n`` digits of ``split`` evenly spaced over it (so every class appears) and their
    indices into the split: the fixed evaluation sets of the demo and the benchmarks."""
    x, _ = mnist(split)
    if n > len(x):  # (repeated digits would count as independent images)
        raise ValueError(f"the {split} split holds {len(x)} digits, {n} asked for")
    ids = torch.linspace(0, len(x) - 1, n).round().long()
    return x[ids], ids


def mnist_midway(n: int, split: str = "validation") -> tuple[Tensor, Tensor]:
    """The ``n - 1`` digits of ``split`` halfway between consecutive digits of
    :func:`mnist_spread` ``(n, split)`` and their indices: a second evaluation set, disjoint
    from that one (the second half of a preset check)."""
    x, _ = mnist(split)
    _, spread = mnist_spread(n, split)
    ids = (spread[:-1] + spread[1:]) // 2
    if len(set(ids.tolist()) | set(spread.tolist())) != 2 * n - 1:
        raise ValueError(f"the {split} split holds {len(x)} digits, too few for {n} and the {n - 1} between them")
    return x[ids], ids


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def from_unit(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and directories (their image files, sorted) into image paths.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the offending path."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: directory holds no image files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def load_image(path: str | Path, notes: list[str] | None = None) -> Tensor:
    """An image file as ``[C, H, W]`` float32 in [-1, 1]; C = 1 for grey images, 3 for
    colour (palette and other colour modes converted to RGB).

    Grey levels keep their depth: 8-bit by 255, 16-bit (``I;16``, or ``I`` within
    0..65535) by 65535; floating-point images are read as intensities in [0, 1] and
    refused outside.  An alpha channel that is not fully opaque is composited onto black
    and a line saying so is appended to ``notes`` (when given).  Raises ``ValueError``
    naming the file for anything unreadable or out of range."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = _pixels(im, str(path), notes)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    x = torch.from_numpy(arr)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return from_unit(x)


def _pixels(im, path: str, notes: list[str] | None) -> np.ndarray:
    """``im``'s pixels as float32 in [0, 1], ``[H, W]`` (grey) or ``[H, W, 3]``."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"{path}: integer image with values outside 0..65535 ({a.min():.0f}..{a.max():.0f})")
        return (a / 65535).astype(np.float32)
    if im.mode == "F":
        a = np.array(im, dtype=np.float32)
        if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise ValueError(f"{path}: floating-point image with values outside [0, 1]; dmap reads them as intensities in [0, 1]")
        return a
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    grey = im.mode in ("1", "L", "LA")
    if im.mode in ("LA", "RGBA", "PA"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        a = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
        if alpha.min() < 1:
            if notes is not None:
                notes.append(f"{path}: {(alpha < 1).mean():.0%} of the pixels are transparent: composited onto black")
            a = a * (alpha if grey else alpha[..., None])
        return a
    return np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0


def to_uint8(x: Tensor) -> np.ndarray:
    """``[C, H, W]`` in [-1, 1] -> ``[H, W]`` or ``[H, W, 3]`` uint8 (values clipped)."""
    a = (to_unit(x.detach().float().cpu()).clamp(0, 1) * 255).round().to(torch.uint8)
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def save_image(path: str | Path, x: Tensor) -> None:
    """Write ``[C, H, W]`` in [-1, 1] as an 8-bit image."""
    from PIL import Image

    Image.fromarray(to_uint8(x)).save(path)


def load_kernel(path: str | Path) -> Tensor:
    """A blur kernel from ``.npy`` (a 2-D array; no pickles) or an image (grey levels,
    colour averaged), as float64 ``[h, w]``; validated and normalized by the task."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            with path.open("rb") as f:
                is_npy = f.read(6) == b"\x93NUMPY"
            k = np.load(path, allow_pickle=False) if is_npy else None
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file") from None
        except (OSError, ValueError) as e:
            why = "it holds Python objects (a pickle), which dmap never loads" if "allow_pickle" in str(e) else str(e)
            raise ValueError(f"{path}: not a readable .npy array: {why}") from None
        if k is None:
            raise ValueError(f"{path}: not a .npy file (write the kernel with numpy.save)")
        if k.dtype.kind not in "fiub":
            raise ValueError(f"{path}: the kernel must hold numbers, not {k.dtype}")
        return torch.from_numpy(k.astype(np.float64))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return (to_unit(load_image(path)).mean(0)).double()


def load_mask(path: str | Path) -> Tensor:
    """An inpainting mask from an image: white (> 0.5 after averaging the channels) is
    observed, black missing; ``[H, W]`` float in [0, 1]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return to_unit(load_image(path)).mean(0)
