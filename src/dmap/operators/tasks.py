"""Named tasks: an operator and Gaussian noise, sized from the image shape.

Settings (DESIGN.md section 4) are given at 32 x 32 and at 256 x 256; for another
size ``s = min(H, W)`` a blur width or kernel size is interpolated geometrically
between the two anchors, ``v(s) = v32 * (v256 / v32) ** log_8(s / 32)``, and
extrapolated beyond them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.blur import Blur, gaussian_kernel, motion_kernel
from dmap.operators.cs import CompressedSensing
from dmap.operators.inpaint import Inpaint, box_hole, box_mask, random_mask
from dmap.operators.phase import PhaseRetrieval
from dmap.operators.resample import Downsample
from dmap.rng import Generators, randn

DEFAULT_SIGMA_Y = 0.05


def scaled(v32: float, v256: float, size: int) -> float:
    """Geometric interpolation of a setting between its 32 px and 256 px values."""
    return v32 * (v256 / v32) ** (math.log(size / 32) / math.log(8))


def _odd(v: float) -> int:
    return max(3, 2 * round((v - 1) / 2) + 1)


Shape = tuple[int, int, int]
Builder = Callable[[Shape, torch.Generator | None], Operator]


def _inpaint_box(shape: Shape, g: torch.Generator | None) -> Operator:
    hole, margin = box_hole(shape[1], shape[2])
    return Inpaint(shape, box_mask(shape[1], shape[2], hole, margin, g))


def _deblur_aniso(shape: Shape, g: torch.Generator | None) -> Operator:
    s = min(shape[1:])
    return Blur(shape, gaussian_kernel(scaled(0.5, 1.0, s), scaled(3.0, 20.0, s)))


def _deblur_gauss(shape: Shape, g: torch.Generator | None) -> Operator:
    sigma = scaled(1.5, 3.0, min(shape[1:]))
    return Blur(shape, gaussian_kernel(sigma, sigma))


def _deblur_motion(shape: Shape, g: torch.Generator | None) -> Operator:
    size = min(_odd(scaled(9, 61, min(shape[1:]))), _odd(min(shape[1:])) - 2)
    return Blur(shape, motion_kernel(size, 0.5, g))


TASKS: dict[str, tuple[Builder, str]] = {
    "inpaint-box": (_inpaint_box, "fill a missing box of half the image side"),
    "inpaint-random": (lambda s, g: Inpaint(s, random_mask(s[1], s[2], 0.7, g)), "70 % of pixels missing"),
    "deblur-aniso": (_deblur_aniso, "anisotropic Gaussian blur (sigma 3 px along width at 32 px)"),
    "deblur-gauss": (_deblur_gauss, "isotropic Gaussian blur (sigma 1.5 px at 32 px)"),
    "deblur-motion": (_deblur_motion, "seeded random motion blur (9 x 9 at 32 px)"),
    "sr4": (lambda s, g: Downsample(s, 4), "4x super-resolution from average pooling"),
    "cs2": (lambda s, g: CompressedSensing(s, 0.5, g), "50 % of permuted Walsh-Hadamard coefficients"),
    "phase-retrieval": (lambda s, g: PhaseRetrieval(s, 2.0), "Fourier magnitudes, oversampling 2 (nonlinear)"),
}


@dataclass
class Task:
    """A named inverse problem ``y = A(x) + sigma_y n`` with ``n ~ N(0, I)``.

    ``sigma_y`` is in [-1, 1] units (0.05 there is 0.025 on [0, 1])."""

    name: str
    operator: Operator
    sigma_y: float

    def simulate(self, x: Tensor, generator: Generators = None) -> Tensor:
        """A measurement ``y = A(x) + sigma_y n`` of a batch ``x [B, C, H, W]``."""
        y = self.operator.A(x)
        return y + self.sigma_y * randn(y.shape, generator, y)


def make_task(name: str, shape: Shape, *, sigma_y: float = DEFAULT_SIGMA_Y, generator: torch.Generator | None = None) -> Task:
    """Build the task ``name`` for images of ``shape = (C, H, W)``; masks, kernels and
    permutations are drawn from ``generator``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if not (math.isfinite(sigma_y) and sigma_y >= 0):
        raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (C, H, W), got {shape}")
    return Task(name, TASKS[name][0](shape, generator), float(sigma_y))
