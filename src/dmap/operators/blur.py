"""Deblurring: circular convolution by a fixed kernel, diagonal in the 2-D FFT."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.operators.base import LinearOperator


class Blur(LinearOperator):
    """``y = k (*) x`` (circular, same kernel in each channel).

    With ``H = FFT2(k)``: ``A = F^-1 H F``, the true adjoint ``A^T = F^-1 conj(H) F``
    and the pseudo-inverse ``F^-1 H^+ F`` with ``H^+ = 1/H`` where ``|H| > rcond max|H|``,
    else 0.  ``kernel`` is ``[h, w]`` with its centre at ``(h // 2, w // 2)``.
    """

    def __init__(self, x_shape: tuple[int, int, int], kernel: Tensor, rcond: float = 1e-10) -> None:
        super().__init__(x_shape, x_shape)
        _, H, W = x_shape
        kh, kw = kernel.shape
        if kh > H or kw > W:
            raise ValueError(f"a {kh} x {kw} kernel does not fit in a {H} x {W} image")
        full = torch.zeros(H, W, dtype=torch.float64)
        full[:kh, :kw] = kernel.double()
        full = torch.roll(full, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        spectrum = torch.fft.fft2(full)
        keep = spectrum.abs() > rcond * spectrum.abs().max()
        inverse = torch.where(keep, 1 / torch.where(keep, spectrum, torch.ones_like(spectrum)), 0)
        # spectra stored as real [H, W, 2] so that .to(dtype) casts them like any buffer
        self.register_buffer("kernel", kernel.double())
        self.register_buffer("spectrum", torch.view_as_real(spectrum))
        self.register_buffer("inverse_spectrum", torch.view_as_real(inverse))

    def _filter(self, x: Tensor, spectrum: Tensor, conj: bool = False) -> Tensor:
        s = torch.view_as_complex(spectrum.to(x.dtype).contiguous())
        return torch.fft.ifft2(torch.fft.fft2(x) * (s.conj() if conj else s)).real

    def A(self, x: Tensor) -> Tensor:
        return self._filter(x, self.spectrum)

    def AT(self, y: Tensor) -> Tensor:
        return self._filter(y, self.spectrum, conj=True)

    def pinv(self, y: Tensor) -> Tensor:
        return self._filter(y, self.inverse_spectrum)

    def view(self, y: Tensor) -> Tensor:
        return y


def gaussian_kernel(sigma_h: float, sigma_w: float, truncate: float = 4.0, radius: int | None = None) -> Tensor:
    """A normalized Gaussian ``[h, w]``: odd sides, ``radius`` pixels each side of the
    centre, or ``truncate`` standard deviations."""
    axes = []
    for s in (sigma_h, sigma_w):
        r = radius if radius is not None else max(1, math.ceil(truncate * s))
        g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / s) ** 2)
        axes.append(g / g.sum())
    return torch.outer(*axes)


def motion_kernel(size: int, intensity: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """A random camera-shake kernel ``[size, size]``: a random walk whose direction
    turns by up to ``intensity * pi`` per step, centred, scaled to the kernel and
    splatted bilinearly; sums to 1."""
    n = 4 * size
    turns = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * intensity * math.pi
    angle = float(torch.rand(1, generator=generator, dtype=torch.float64)) * 2 * math.pi + torch.cumsum(turns, 0)
    path = torch.cumsum(torch.stack([angle.sin(), angle.cos()], 1), 0)
    path = path - (path.max(0).values + path.min(0).values) / 2
    extent = (path.max(0).values - path.min(0).values).max().clamp_min(1e-9)
    path = path / extent * (size - 1) * 0.9 + (size - 1) / 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    base = path.floor().long().clamp(0, size - 2)
    frac = path - base
    for dy in (0, 1):
        for dx in (0, 1):
            w = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            kernel.index_put_((base[:, 0] + dy, base[:, 1] + dx), w, accumulate=True)
    return kernel / kernel.sum()
