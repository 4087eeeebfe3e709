"""A nonlinear blur: a small fixed random network applied to each channel, a stand-in
for the learned nonlinear blur of the DPS paper (whose kernel network is not ours to ship).

    y = k * x + 0.3 tanh(conv_2(tanh(conv_1(x))))

per channel, with ``k`` the isotropic Gaussian of ``deblur-gauss`` and ``conv_1`` (1 -> 8
channels, 5 x 5), ``conv_2`` (8 -> 1, 5 x 5) reflect-padded.  The weights are drawn from a
fixed seed by :func:`nonlinear_blur_weights` on the CPU generator, which torch keeps the
same across platforms and versions (a test pins some of the values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.blur import Blur

SEED = 20260601
WIDTH, SIZE, STRENGTH = 8, 5, 0.3


def nonlinear_blur_weights(seed: int = SEED) -> dict[str, Tensor]:
    """The network's weights, drawn from ``seed`` (He-normal convolutions, zero biases)."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(WIDTH, 1, SIZE, SIZE, generator=g) * (2 / SIZE**2) ** 0.5
    w2 = torch.randn(1, WIDTH, SIZE, SIZE, generator=g) * (2 / (WIDTH * SIZE**2)) ** 0.5
    return {"conv1.weight": w1, "conv1.bias": torch.zeros(WIDTH), "conv2.weight": w2, "conv2.bias": torch.zeros(1)}


class NonlinearBlur(Operator):
    """``y = blur(x) + 0.3 tanh(conv_2(tanh(conv_1(x))))`` per channel (see the module)."""

    def __init__(self, x_shape: tuple[int, int, int], blur: Blur, weights: dict[str, Tensor]) -> None:
        super().__init__(x_shape, x_shape)
        self.blur = blur
        for name, w in weights.items():
            self.register_buffer(name.replace(".", "_"), w.float())

    def _conv(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        pad = SIZE // 2
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), w.to(x), b.to(x))

    def A(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        flat = x.reshape(B * C, 1, H, W)
        h = torch.tanh(self._conv(flat, self.conv1_weight, self.conv1_bias))
        h = torch.tanh(self._conv(h, self.conv2_weight, self.conv2_bias))
        return self.blur.A(x) + STRENGTH * h.reshape(B, C, H, W)
