"""Compressed sensing: a random subset of orthonormal Walsh-Hadamard coefficients."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.operators.base import SVDOperator


def hadamard(n: int) -> Tensor:
    """The orthonormal Sylvester-Hadamard matrix ``[n, n]`` (n a power of 2)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size must be a power of 2, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def cs_block(H: int, W: int, cap: int = 32) -> int:
    """Block side: the largest power of 2 dividing both H and W, at most ``cap``
    (the whole 32 x 32 image; 32 x 32 blocks at 256 x 256)."""
    b = 1
    while b < cap and H % (2 * b) == 0 and W % (2 * b) == 0:
        b *= 2
    return b


class CompressedSensing(SVDOperator):
    """``y = P_m W x``: the orthonormal Walsh-Hadamard transform ``W`` of each ``b x b``
    block of each channel, a random permutation of all ``d`` coefficients, and the first
    ``m = round(ratio d)`` kept.  ``A A^T = I``, so ``A^+ = A^T``; singular values 1."""

    def __init__(self, x_shape: tuple[int, int, int], ratio: float, generator: torch.Generator | None) -> None:
        C, H, W = x_shape
        d = C * H * W
        m = int(round(ratio * d))
        if not 0 < m <= d:
            raise ValueError(f"ratio {ratio} keeps no coefficient")
        super().__init__(x_shape, (m,))
        self.block = cs_block(H, W)
        self.register_buffer("transform", hadamard(self.block**2))
        perm = torch.randperm(d, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inverse", torch.argsort(perm))

    def singular_values(self) -> Tensor:
        return torch.ones(self.y_shape[0], device=self.perm.device)

    def _blocks(self, x: Tensor) -> Tensor:
        C, H, W = self.x_shape
        b = self.block
        return x.reshape(-1, C, H // b, b, W // b, b).permute(0, 1, 2, 4, 3, 5).reshape(x.shape[0], -1, b * b)

    def _unblocks(self, z: Tensor) -> Tensor:
        C, H, W = self.x_shape
        b = self.block
        return z.reshape(-1, C, H // b, W // b, b, b).permute(0, 1, 2, 4, 3, 5).reshape(z.shape[0], C, H, W)

    def VT(self, x: Tensor) -> Tensor:
        coef = self._blocks(x) @ self.transform.to(x)  # symmetric transform
        return coef.reshape(x.shape[0], -1)[:, self.perm]

    def V(self, c: Tensor) -> Tensor:
        coef = c[:, self.inverse].reshape(c.shape[0], -1, self.block**2)
        return self._unblocks(coef @ self.transform.to(c))

    def U(self, c: Tensor) -> Tensor:
        return c

    def UT(self, y: Tensor) -> Tensor:
        return y
