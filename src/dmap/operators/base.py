"""Forward models ``y = A(x) + n``: the operator protocol (DESIGN.md section 4).

Operators are ``nn.Module``s whose masks, kernels and permutations are buffers fixed
at construction, so they follow ``.to(device)``.  They act on batches ``[B, *x_shape]``
and return ``[B, *y_shape]``; nothing couples the samples of a batch.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class Operator(nn.Module):
    """A (possibly nonlinear) forward model ``A: [B, *x_shape] -> [B, *y_shape]``."""

    linear: bool = False

    def __init__(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.y_shape = tuple(y_shape)

    def A(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def view(self, y: Tensor) -> Tensor:
        """The measurement as an image ``[B, C, H', W']`` in roughly [-1, 1], for display."""
        raise NotImplementedError


class LinearOperator(Operator):
    """A linear ``A`` with its true adjoint ``AT`` (``<A x, y> = <x, AT y>``) and the
    Moore-Penrose pseudo-inverse ``pinv``."""

    linear = True

    def AT(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def view(self, y: Tensor) -> Tensor:
        return self.pinv(y)

    def observed(self) -> Tensor:
        """Where ``x`` is observed, ``[*x_shape]`` in {0, 1}: ones unless the operator
        keeps a subset of pixels (inpainting overrides it with its mask)."""
        return torch.ones(self.x_shape, device=next(iter(self.buffers()), torch.empty(0)).device)

    def matrix(self) -> Tensor:
        """``A`` as a dense float64 matrix ``[m, d]`` (apply it to the standard basis);
        for small images only (used by the Gaussian-mixture oracle)."""
        d = math.prod(self.x_shape)
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *self.x_shape)
        op = copy.deepcopy(self).to(device="cpu", dtype=torch.float64)
        cols = torch.cat([op.A(b).reshape(len(b), -1) for b in basis.split(256)])
        return cols.T.contiguous()


class SVDOperator(LinearOperator):
    """A linear operator with an explicit SVD ``A = U diag(s) V^T[:m]``: ``VT`` maps an
    image to ``d`` orthonormal coefficients whose first ``m`` carry the singular values
    ``s`` (in the same order as ``UT``'s output)."""

    def singular_values(self) -> Tensor:
        raise NotImplementedError

    def V(self, c: Tensor) -> Tensor:
        raise NotImplementedError

    def VT(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def U(self, c: Tensor) -> Tensor:
        raise NotImplementedError

    def UT(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def A(self, x: Tensor) -> Tensor:
        s = self.singular_values().to(x)
        return self.U(s * self.VT(x)[:, : s.numel()])

    def AT(self, y: Tensor) -> Tensor:
        return self._from_spectral(self.UT(y) * self.singular_values().to(y))

    def pinv(self, y: Tensor) -> Tensor:
        s = self.singular_values().to(y)
        inv = torch.where(s > 1e-10, 1 / s.clamp_min(1e-10), torch.zeros_like(s))
        return self._from_spectral(self.UT(y) * inv)

    def _from_spectral(self, c: Tensor) -> Tensor:
        """``V [c, 0]``: an image from its first ``m`` spectral coefficients."""
        d = math.prod(self.x_shape)
        return self.V(torch.cat([c, c.new_zeros(c.shape[0], d - c.shape[1])], dim=1))
