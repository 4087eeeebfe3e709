"""A dense matrix as an operator, with its SVD: ``y = M vec(x)`` for small problems (the
synthetic mixtures of :mod:`dmap.analysis.fidelity`, a user's own measurement matrix)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.operators.base import SVDOperator


class Matrix(SVDOperator):
    """``A(x) = M vec(x)`` for ``M [m, d]`` and images of ``x_shape`` (``d`` pixels); its SVD
    ``M = U diag(s) V^T`` (computed once in float64) gives ``U``, ``V`` and the singular
    values, so every method runs on it, DDRM included."""

    def __init__(self, matrix: Tensor, x_shape: tuple[int, ...]) -> None:
        m, d = matrix.shape
        if d != math.prod(x_shape):
            raise ValueError(f"a {m} x {d} matrix does not act on images of {tuple(x_shape)}")
        super().__init__(x_shape, (m,))
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=True)
        k = min(m, d)
        self.register_buffer("M", matrix.double())
        self.register_buffer("u", u[:, :k])  # [m, k]
        self.register_buffer("s", s)  # [k]
        self.register_buffer("v", vh.T)  # [d, d], columns ordered with s first

    def singular_values(self) -> Tensor:
        return self.s

    def V(self, c: Tensor) -> Tensor:
        return (c.double() @ self.v.T).to(c.dtype).reshape(len(c), *self.x_shape)

    def VT(self, x: Tensor) -> Tensor:
        return (x.reshape(len(x), -1).double() @ self.v).to(x.dtype)

    def U(self, c: Tensor) -> Tensor:
        return (c.double() @ self.u.T).to(c.dtype)

    def UT(self, y: Tensor) -> Tensor:
        return (y.double() @ self.u).to(y.dtype)

    def A(self, x: Tensor) -> Tensor:
        return (x.reshape(len(x), -1).double() @ self.M.T).to(x.dtype)

    def matrix(self) -> Tensor:
        return self.M.clone()
