"""Super-resolution: ``f x f`` average pooling, with its exact SVD."""

from __future__ import annotations

import torch
from torch import Tensor

from dmap.operators.base import SVDOperator


def block_basis(n: int) -> Tensor:
    """An orthonormal ``[n, n]`` basis whose first column is constant ``1/sqrt(n)``."""
    q, _ = torch.linalg.qr(torch.cat([torch.ones(n, 1), torch.eye(n)[:, 1:]], 1).double())
    return q * q[0, 0].sign()


class Downsample(SVDOperator):
    """``y = avgpool_f(x)``, ``y_shape = (C, H/f, W/f)``.

    In each ``f x f`` block, ``V`` is an orthonormal basis whose first vector is the
    constant ``1/f``; the block mean is ``(1/f)`` times that coefficient, so every
    singular value is ``1/f`` and ``A^+ = f^2 A^T`` (nearest-neighbour upsampling).
    """

    def __init__(self, x_shape: tuple[int, int, int], factor: int) -> None:
        C, H, W = x_shape
        if H % factor or W % factor:
            raise ValueError(f"{factor}x downsampling needs H and W divisible by {factor}, got {H} x {W}")
        super().__init__(x_shape, (C, H // factor, W // factor))
        self.factor = factor
        self.register_buffer("basis", block_basis(factor * factor))

    def singular_values(self) -> Tensor:
        C, h, w = self.y_shape
        return torch.full((C * h * w,), 1.0 / self.factor, device=self.basis.device)

    def VT(self, x: Tensor) -> Tensor:
        B, f = x.shape[0], self.factor
        C, h, w = self.y_shape
        blocks = x.reshape(B, C, h, f, w, f).permute(0, 1, 2, 4, 3, 5).reshape(B, C * h * w, f * f)
        coef = blocks @ self.basis.to(x)
        return torch.cat([coef[..., 0], coef[..., 1:].reshape(B, -1)], 1)

    def V(self, c: Tensor) -> Tensor:
        B, f = c.shape[0], self.factor
        C, h, w = self.y_shape
        m = C * h * w
        coef = torch.cat([c[:, :m, None], c[:, m:].reshape(B, m, f * f - 1)], 2)
        blocks = coef @ self.basis.to(c).T
        return blocks.reshape(B, C, h, w, f, f).permute(0, 1, 2, 4, 3, 5).reshape(B, *self.x_shape)

    def U(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.y_shape)

    def UT(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)
