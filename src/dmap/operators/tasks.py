"""Named tasks: an operator and a noise model, sized from the image shape.

Settings (docs/methods.md, Tasks) are given at 32 x 32 and at 256 x 256; for another
size ``s = min(H, W)`` a blur width or kernel size is interpolated geometrically
between the two anchors, ``v(s) = v32 * (v256 / v32) ** log_8(s / 32)``, and
extrapolated beyond them.  ``deblur-gauss61`` and ``sr8`` follow the Stable Diffusion
setting of Xu et al. (61 px / sigma 3 blur at 512 px, scaled in proportion to the size).
A task may also be built from any operator (``make_task(op)``), and the deblurring and
inpainting tasks take a measured kernel or mask instead of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.blur import Blur, gaussian_kernel, motion_kernel
from dmap.operators.cs import CompressedSensing
from dmap.operators.inpaint import Inpaint, box_hole, box_mask, random_mask
from dmap.operators.noise import GaussianNoise, Noise
from dmap.operators.nonlinear_blur import NonlinearBlur, nonlinear_blur_weights
from dmap.operators.phase import PhaseRetrieval
from dmap.operators.resample import BicubicDown, Downsample, Grey
from dmap.rng import Generators

DEFAULT_SIGMA_Y = 0.05


def scaled(v32: float, v256: float, size: int) -> float:
    """Geometric interpolation of a setting between its 32 px and 256 px values."""
    return v32 * (v256 / v32) ** (math.log(size / 32) / math.log(8))


def _odd(v: float) -> int:
    return max(3, 2 * round((v - 1) / 2) + 1)


Shape = tuple[int, int, int]
Builder = Callable[[Shape, "torch.Generator | None", "Tensor | None"], Operator]


def _inpaint_box(shape: Shape, g: torch.Generator | None, mask: Tensor | None) -> Operator:
    hole, margin = box_hole(shape[1], shape[2])
    return Inpaint(shape, box_mask(shape[1], shape[2], hole, margin, g) if mask is None else mask)


def _inpaint_random(shape: Shape, g: torch.Generator | None, mask: Tensor | None) -> Operator:
    return Inpaint(shape, random_mask(shape[1], shape[2], 0.7, g) if mask is None else mask)


def _deblur_aniso(shape: Shape, g: torch.Generator | None, kernel: Tensor | None) -> Operator:
    s = min(shape[1:])
    return Blur(shape, gaussian_kernel(scaled(0.5, 1.0, s), scaled(3.0, 20.0, s)) if kernel is None else kernel)


def _deblur_gauss(shape: Shape, g: torch.Generator | None, kernel: Tensor | None) -> Operator:
    sigma = scaled(1.5, 3.0, min(shape[1:]))
    return Blur(shape, gaussian_kernel(sigma, sigma) if kernel is None else kernel)


def _deblur_gauss61(shape: Shape, g: torch.Generator | None, kernel: Tensor | None) -> Operator:
    if kernel is None:
        s = min(shape[1:])
        size = min(_odd(61 * s / 512), _odd(s) - 2)
        sigma = 3.0 * s / 512
        kernel = gaussian_kernel(sigma, sigma, radius=size // 2)
    return Blur(shape, kernel)


def _deblur_motion(shape: Shape, g: torch.Generator | None, kernel: Tensor | None) -> Operator:
    size = min(_odd(scaled(9, 61, min(shape[1:]))), _odd(min(shape[1:])) - 2)
    return Blur(shape, motion_kernel(size, 0.5, g) if kernel is None else kernel)


def _deblur_nonlinear(shape: Shape, g: torch.Generator | None, kernel: Tensor | None) -> Operator:
    return NonlinearBlur(shape, _deblur_gauss(shape, g, kernel), nonlinear_blur_weights())


@dataclass(frozen=True)
class TaskSpec:
    """A named task: its builder, a description and which file it can take instead of
    its own setting (``"kernel"``, ``"mask"`` or ``None``)."""

    build: Builder
    description: str
    takes: str | None = None


# (one task a line, like a table: kept as written)
TASKS: dict[str, TaskSpec] = {
    "inpaint-box": TaskSpec(_inpaint_box, "fill a missing box of half the image side", "mask"),
    "inpaint-random": TaskSpec(_inpaint_random, "70 % of pixels missing", "mask"),
    "deblur-aniso": TaskSpec(_deblur_aniso, "anisotropic Gaussian blur (sigma 3 px along width at 32 px)", "kernel"),
    "deblur-gauss": TaskSpec(_deblur_gauss, "isotropic Gaussian blur (sigma 1.5 px at 32 px)", "kernel"),
    "deblur-gauss61": TaskSpec(_deblur_gauss61, "Gaussian blur of the SD setting, 61 px / sigma 3 at 512 px, scaled "
                               "(3 x 3, sigma 0.19 at 32 px)", "kernel"),
    "deblur-motion": TaskSpec(_deblur_motion, "seeded random motion blur (9 x 9 at 32 px)", "kernel"),
    "deblur-nonlinear": TaskSpec(_deblur_nonlinear, "Gaussian blur plus a fixed random network (nonlinear)", "kernel"),
    "sr4": TaskSpec(lambda s, g, _: Downsample(s, 4), "4x super-resolution from average pooling"),
    "sr8": TaskSpec(lambda s, g, _: BicubicDown(s, 8), "8x super-resolution from anti-aliased bicubic downsampling"),
    "cs2": TaskSpec(lambda s, g, _: CompressedSensing(s, 0.5, g), "50 % of permuted Walsh-Hadamard coefficients"),
    "colorize": TaskSpec(lambda s, g, _: Grey(s), "colour from the luma of a colour image (3 channels only)"),
    "phase-retrieval": TaskSpec(lambda s, g, _: PhaseRetrieval(s, 2.0), "Fourier magnitudes, oversampling 2 (nonlinear)"),
}  # fmt: skip


def register_task(name: str, build: Builder, description: str, takes: str | None = None) -> None:
    """Add a named task (``build(shape, generator, kernel_or_mask) -> Operator``)."""
    if name in TASKS:
        raise ValueError(f"task {name!r} is registered twice")
    TASKS[name] = TaskSpec(build, description, takes)


@dataclass(frozen=True)
class Task:
    """A named inverse problem ``y = noise(A(x))``: an operator and a noise model
    (:mod:`dmap.operators.noise`; Gaussian with ``sigma_y`` in [-1, 1] units by default,
    0.05 there is 0.025 on [0, 1])."""

    name: str
    operator: Operator
    noise: Noise

    @property
    def sigma_y(self) -> float:
        """The standard deviation of the noise's Gaussian part."""
        return self.noise.sigma

    def simulate(self, x: Tensor, generator: Generators = None) -> Tensor:
        """A measurement ``y = noise(A(x))`` of a batch ``x [B, C, H, W]``."""
        return self.noise.sample(self.operator.A(x), generator)

    def to(self, device: torch.device | str) -> Task:
        return replace(self, operator=self.operator.to(device))


def check_kernel(kernel: Tensor) -> Tensor:
    """A measured blur kernel ``[h, w]`` (any size), validated and normalized to sum 1."""
    k = torch.as_tensor(kernel, dtype=torch.float64)
    if k.dim() != 2 or min(k.shape) < 1:
        raise ValueError(f"a blur kernel must be a 2-D array, got shape {tuple(k.shape)}")
    if not torch.isfinite(k).all():
        raise ValueError("the blur kernel holds NaN or infinite values")
    if (k < 0).any() or k.sum() <= 0:
        raise ValueError("a blur kernel must be non-negative and not all zero")
    return k / k.sum()


def check_mask(mask: Tensor, H: int, W: int) -> Tensor:
    """An inpainting mask ``[H, W]`` (True or > 0.5 = observed), validated."""
    m = torch.as_tensor(mask)
    if tuple(m.shape) != (H, W):
        raise ValueError(f"the mask is {tuple(m.shape)}, the image {H} x {W}")
    if m.is_floating_point() and not torch.isfinite(m).all():
        raise ValueError("the mask holds NaN or infinite values")
    m = m > 0.5 if m.is_floating_point() else m.bool()
    if not m.any():
        raise ValueError("the mask observes no pixel")
    return m


def make_task(
    name: str | Operator,
    shape: Shape | None = None,
    *,
    sigma_y: float = DEFAULT_SIGMA_Y,
    noise: Noise | None = None,
    generator: torch.Generator | None = None,
    kernel: Tensor | None = None,
    mask: Tensor | None = None,
) -> Task:
    """Build the task ``name`` for images of ``shape = (C, H, W)`` — masks, kernels and
    permutations drawn from ``generator``, or ``kernel`` / ``mask`` given — or a task from
    any operator ``name`` (its ``x_shape`` is the image shape).  The noise is ``noise``, or
    Gaussian with ``sigma_y``."""
    noise = GaussianNoise(float(sigma_y)) if noise is None else noise
    if isinstance(name, Operator):
        if shape is not None and tuple(shape) != tuple(name.x_shape):
            raise ValueError(f"the operator takes images {name.x_shape}, not {tuple(shape)}")
        return Task(getattr(name, "name", "custom"), name, noise)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    shape = tuple(int(v) for v in shape or ())
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (C, H, W), got {shape}")
    spec = TASKS[name]
    for what, value in (("kernel", kernel), ("mask", mask)):
        if value is not None and spec.takes != what:
            takers = ", ".join(n for n, t in TASKS.items() if t.takes == what)
            raise ValueError(f"a {what} applies to the tasks {takers}, not {name}")
    override = check_kernel(kernel) if kernel is not None else check_mask(mask, *shape[1:]) if mask is not None else None
    return Task(name, spec.build(shape, generator, override), noise)
