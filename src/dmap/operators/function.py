"""Operators from any torch function, composition, a generic pseudo-inverse and the
adjointness check a user can run on their own operator.

    op = FunctionOperator(lambda x: conv(x)[..., ::2, ::2], (1, 32, 32))   # adjoint by autograd
    print(check_adjoint(op, (1, 32, 32)))                                  # relative error
    task = dmap.make_task(op, sigma_y=0.05)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from dmap.operators.base import LinearOperator, Operator

Fn = Callable[[Tensor], Tensor]


def _output_shape(A: Fn, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(A(torch.zeros(1, *in_shape)).shape[1:])


class FunctionOperator(LinearOperator):
    """A linear operator given by a differentiable torch function ``A`` on batches
    ``[B, *in_shape]``; ``AT`` (adjoint) and ``pinv`` are optional functions, else the
    autograd adjoint and conjugate gradients serve.  ``y_shape`` is found by applying
    ``A`` once."""

    def __init__(
        self, A: Fn, in_shape: tuple[int, ...], *, AT: Fn | None = None, pinv: Fn | None = None, name: str = "custom"
    ) -> None:
        super().__init__(tuple(in_shape), _output_shape(A, tuple(in_shape)))
        self.fn, self.adjoint_fn, self.pinv_fn, self.name = A, AT, pinv, name

    def A(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def AT(self, y: Tensor) -> Tensor:
        return self.adjoint_fn(y) if self.adjoint_fn is not None else super().AT(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self.pinv_fn(y) if self.pinv_fn is not None else super().pinv(y)


class NonlinearFunctionOperator(Operator):
    """A nonlinear forward model from a differentiable torch function (``A`` only)."""

    def __init__(self, A: Fn, in_shape: tuple[int, ...], name: str = "custom") -> None:
        super().__init__(tuple(in_shape), _output_shape(A, tuple(in_shape)))
        self.fn, self.name = A, name

    def A(self, x: Tensor) -> Tensor:
        return self.fn(x)


def check_adjoint(
    op: LinearOperator, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> float:
    """``|<A x, y> - <x, A^T y>| / |<A x, y>|`` for random ``x`` of ``shape`` (= ``(C, H, W)``)
    and ``y``, in ``dtype``: about 1e-15 in float64 for a true adjoint."""
    x = torch.randn(1, *shape, generator=generator, dtype=dtype)
    ax = op.A(x)
    y = torch.randn(ax.shape, generator=generator, dtype=dtype)
    lhs, rhs = float((ax * y).sum()), float((x * op.AT(y)).sum())
    return abs(lhs - rhs) / max(abs(lhs), math.ulp(1.0))
