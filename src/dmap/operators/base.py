"""Forward models ``y = A(x) + n``: the operator protocol (docs/operators.md).

Operators are ``nn.Module``s whose masks, kernels and permutations are buffers fixed
at construction, so they follow ``.to(device)``.  They act on batches ``[B, *x_shape]``
and return ``[B, *y_shape]``; nothing couples the samples of a batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Operator(nn.Module):
    """A (possibly nonlinear) forward model ``A: [B, *x_shape] -> [B, *y_shape]``.

    Operators compose: ``(outer @ inner).A(x) = outer.A(inner.A(x))``."""

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
        """The measurement as an image ``[B, C, H', W']`` in roughly [-1, 1], for display:
        ``y`` itself when it has the shape of an image, else the zero image."""
        if len(self.y_shape) == 3:
            return y
        return torch.zeros(y.shape[0], *self.x_shape, dtype=y.dtype, device=y.device)

    def __matmul__(self, inner: Operator) -> Operator:
        return Composed(self, inner)


class LinearOperator(Operator):
    """A linear ``A`` with its true adjoint ``AT`` (``<A x, y> = <x, AT y>``) and the
    Moore-Penrose pseudo-inverse ``pinv``.

    Subclasses that know them in closed form override ``AT`` and ``pinv``; otherwise the
    adjoint is the vector-Jacobian product of ``A`` (exact for a linear map) and the
    pseudo-inverse the minimum-norm least-squares solution by conjugate gradients
    (:func:`cgls`)."""

    linear = True

    def AT(self, y: Tensor) -> Tensor:
        x = torch.zeros(y.shape[0], *self.x_shape, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.A(x), x, grad_outputs=y)
        return g

    def pinv(self, y: Tensor) -> Tensor:
        return cgls(self, y)

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


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products ``[B]``."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def conjugate_gradients(apply: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor, iters: int = 200, tol: float = 1e-10) -> Tensor:
    """Solve ``M x = b`` per sample for a symmetric positive semi-definite ``M`` given as
    ``apply(v) = M v`` (batched), from ``x0``; stops when every sample's squared residual
    fell below ``tol`` times its start."""
    x = x0.clone()
    r = b - apply(x)
    p = r.clone()
    gamma = _dot(r, r)
    tiny = torch.finfo(b.dtype).tiny
    start = gamma.clamp_min(tiny)
    for _ in range(iters):
        active = gamma > tol * start  # a converged sample stops moving: a batch equals its samples solved alone
        if not bool(active.any()):
            break
        q = apply(p)
        alpha = torch.where(active, gamma / _dot(p, q).clamp_min(tiny), torch.zeros_like(gamma))
        x = x + _bcast(alpha, x) * p
        r = r - _bcast(alpha, r) * q
        gamma_new = torch.where(active, _dot(r, r), gamma)
        p = torch.where(_bcast(active, p), r + _bcast(gamma_new / gamma.clamp_min(tiny), p) * p, p)
        gamma = gamma_new
    return x


def cgls(op: LinearOperator, y: Tensor, iters: int = 200, tol: float = 1e-10) -> Tensor:
    """The minimum-norm least-squares solution ``A^+ y`` per sample: conjugate gradients on
    the normal equations ``A^T A x = A^T y`` started at 0 (the iterates stay in the row
    space of ``A``)."""
    x0 = torch.zeros(y.shape[0], *op.x_shape, dtype=y.dtype, device=y.device)
    return conjugate_gradients(lambda v: op.AT(op.A(v)), op.AT(y), x0, iters, tol)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class Composed(LinearOperator):
    """``outer @ inner``: ``A = outer.A o inner.A``, ``A^T = inner.A^T o outer.A^T``
    (linear when both are; the pseudo-inverse by conjugate gradients)."""

    def __init__(self, outer: Operator, inner: Operator) -> None:
        if tuple(outer.x_shape) != tuple(inner.y_shape):
            raise ValueError(f"cannot compose: the inner operator gives {inner.y_shape}, the outer takes {outer.x_shape}")
        super().__init__(inner.x_shape, outer.y_shape)
        self.outer, self.inner = outer, inner
        self.linear = outer.linear and inner.linear

    def A(self, x: Tensor) -> Tensor:
        return self.outer.A(self.inner.A(x))

    def AT(self, y: Tensor) -> Tensor:
        if not self.linear:
            raise TypeError("a composition with a nonlinear operator has no adjoint")
        return self.inner.AT(self.outer.AT(y))

    def pinv(self, y: Tensor) -> Tensor:
        if not self.linear:
            raise TypeError("a composition with a nonlinear operator has no pseudo-inverse")
        return super().pinv(y)

    def view(self, y: Tensor) -> Tensor:
        return super().view(y) if self.linear else Operator.view(self, y)
