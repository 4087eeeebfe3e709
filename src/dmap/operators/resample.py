"""Super-resolution (``f x f`` average pooling with its exact SVD; anti-aliased bicubic
downsampling) and colourization (luma of a colour image)."""

from __future__ import annotations

import torch
from torch import Tensor

from dmap.operators.base import LinearOperator, SVDOperator


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


def cubic(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (``a = -0.5``, as PIL and the paper's resizer)."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_matrix(n: int, factor: int) -> Tensor:
    """``[n / factor, n]``: anti-aliased bicubic downsampling of one axis (the cubic kernel
    stretched by ``factor``, each row normalized to sum 1 at the borders too)."""
    out = n // factor
    centre = (torch.arange(out, dtype=torch.float64) + 0.5) * factor - 0.5
    w = cubic((torch.arange(n, dtype=torch.float64)[None, :] - centre[:, None]) / factor)
    return w / w.sum(1, keepdim=True)


class BicubicDown(LinearOperator):
    """``y = M_h x M_w^T`` per channel: separable anti-aliased bicubic downsampling by
    ``factor``.  The true adjoint is ``M_h^T y M_w``; the pseudo-inverse is exact,
    ``M_h^+ y (M_w^+)^T``, since the pseudo-inverse of a Kronecker product is the
    Kronecker product of the pseudo-inverses."""

    def __init__(self, x_shape: tuple[int, int, int], factor: int) -> None:
        C, H, W = x_shape
        if H % factor or W % factor:
            raise ValueError(f"{factor}x downsampling needs H and W divisible by {factor}, got {H} x {W}")
        super().__init__(x_shape, (C, H // factor, W // factor))
        mh, mw = bicubic_matrix(H, factor), bicubic_matrix(W, factor)
        for name, m in (("mh", mh), ("mw", mw), ("mh_pinv", torch.linalg.pinv(mh)), ("mw_pinv", torch.linalg.pinv(mw))):
            self.register_buffer(name, m)

    def A(self, x: Tensor) -> Tensor:
        return self.mh.to(x) @ x @ self.mw.to(x).T

    def AT(self, y: Tensor) -> Tensor:
        return self.mh.to(y).T @ y @ self.mw.to(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self.mh_pinv.to(y) @ y @ self.mw_pinv.to(y).T


class Grey(LinearOperator):
    """Colourization: ``y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601 luma) of a colour
    image ``[3, H, W]``; ``A^+ y = w y / ||w||^2`` per pixel."""

    WEIGHTS = (0.299, 0.587, 0.114)

    def __init__(self, x_shape: tuple[int, int, int]) -> None:
        C, H, W = x_shape
        if C != 3:
            raise ValueError(f"colorize needs colour images (3 channels), got {C}")
        super().__init__(x_shape, (1, H, W))
        self.register_buffer("w", torch.tensor(self.WEIGHTS, dtype=torch.float64).reshape(1, 3, 1, 1))

    def A(self, x: Tensor) -> Tensor:
        return (self.w.to(x) * x).sum(1, keepdim=True)

    def AT(self, y: Tensor) -> Tensor:
        return self.w.to(y) * y

    def pinv(self, y: Tensor) -> Tensor:
        w = self.w.to(y)
        return w * y / w.pow(2).sum()

    def view(self, y: Tensor) -> Tensor:
        return y.expand(-1, 3, -1, -1)
