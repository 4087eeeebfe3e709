"""Phase retrieval: Fourier magnitudes of the zero-padded image (nonlinear)."""

from __future__ import annotations

import torch
from torch import Tensor

from dmap.operators.base import Operator


class PhaseRetrieval(Operator):
    """``y = |F pad((x + 1) / 2)|`` with the orthonormal 2-D FFT ``F``.

    The image is moved to [0, 1] first so that the zero padding equals the background
    of a digit (black).  ``oversampling`` follows the DPS reference: each side is padded
    by ``round(oversampling / 8 * size)`` pixels (64 of 256 for oversampling 2).
    """

    def __init__(self, x_shape: tuple[int, int, int], oversampling: float = 2.0) -> None:
        C, H, W = x_shape
        self.pad_h, self.pad_w = round(oversampling / 8 * H), round(oversampling / 8 * W)
        super().__init__(x_shape, (C, H + 2 * self.pad_h, W + 2 * self.pad_w))

    def A(self, x: Tensor) -> Tensor:
        padded = torch.nn.functional.pad((x + 1) / 2, (self.pad_w, self.pad_w, self.pad_h, self.pad_h))
        return torch.fft.fft2(padded, norm="ortho").abs()

    def view(self, y: Tensor) -> Tensor:
        """Centred log-magnitude, scaled per sample to [-1, 1]."""
        v = torch.fft.fftshift(torch.log1p(y.clamp_min(0)), dim=(-2, -1))
        lo = v.amin(dim=(1, 2, 3), keepdim=True)
        hi = v.amax(dim=(1, 2, 3), keepdim=True)
        return (v - lo) / (hi - lo).clamp_min(1e-12) * 2 - 1
