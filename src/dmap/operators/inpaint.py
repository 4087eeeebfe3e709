"""Inpainting: keep a subset of pixels (the same pixels in every channel)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.operators.base import SVDOperator


class Inpaint(SVDOperator):
    """``y = x[kept]``: the observed pixels, flattened, ``y_shape = (m,)``.

    ``mask`` is ``[H, W]`` bool (True = observed).  As an SVD: ``V^T`` lists the kept
    entries of ``x`` first, then the dropped ones; all singular values are 1 and
    ``A^+ = A^T`` fills the hole with zeros (mid-grey).
    """

    def __init__(self, x_shape: tuple[int, int, int], mask: Tensor) -> None:
        C, H, W = x_shape
        if mask.shape != (H, W):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match image {H} x {W}")
        full = mask.bool().expand(C, H, W).reshape(-1)
        kept, dropped = full.nonzero().squeeze(1), (~full).nonzero().squeeze(1)
        super().__init__(x_shape, (kept.numel(),))
        self.register_buffer("mask", mask.bool())
        self.register_buffer("order", torch.cat([kept, dropped]))
        self.register_buffer("inverse", torch.argsort(torch.cat([kept, dropped])))

    def singular_values(self) -> Tensor:
        return torch.ones(self.y_shape[0], device=self.order.device)

    def observed(self) -> Tensor:
        return self.mask.float().expand(self.x_shape).clone()

    def VT(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)[:, self.order]

    def V(self, c: Tensor) -> Tensor:
        return c[:, self.inverse].reshape(c.shape[0], *self.x_shape)

    def U(self, c: Tensor) -> Tensor:
        return c

    def UT(self, y: Tensor) -> Tensor:
        return y


def box_mask(H: int, W: int, hole: tuple[int, int], margin: int, generator: torch.Generator | None) -> Tensor:
    """A mask with one ``hole[0] x hole[1]`` box of missing pixels at a random position
    at least ``margin`` pixels from the border."""
    hh, hw = hole
    if hh + 2 * margin > H or hw + 2 * margin > W:
        raise ValueError(f"a {hh} x {hw} hole with margin {margin} does not fit in {H} x {W}")
    top = margin + int(torch.randint(H - hh - 2 * margin + 1, (1,), generator=generator))
    left = margin + int(torch.randint(W - hw - 2 * margin + 1, (1,), generator=generator))
    mask = torch.ones(H, W, dtype=torch.bool)
    mask[top : top + hh, left : left + hw] = False
    return mask


def random_mask(H: int, W: int, drop: float, generator: torch.Generator | None) -> Tensor:
    """A mask dropping ``round(drop * H * W)`` pixels chosen uniformly at random."""
    n_drop = int(round(drop * H * W))
    perm = torch.randperm(H * W, generator=generator)
    mask = torch.ones(H * W, dtype=torch.bool)
    mask[perm[:n_drop]] = False
    return mask.reshape(H, W)


def box_hole(H: int, W: int) -> tuple[tuple[int, int], int]:
    """The paper's box setting scaled to the image: half of each side (128 of 256),
    margin 1/16 of the smaller side (16 of 256, 2 of 32)."""
    return (H // 2, W // 2), max(0, math.floor(min(H, W) / 16))
