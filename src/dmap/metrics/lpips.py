"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"): the distance between two images ``x, x'`` in [-1, 1] is

    d(x, x') = sum_l  mean_{h,w}  || w_l * (f_l(x) - f_l(x')) ||^2,

where ``f_l`` are the unit-normalized (over channels, eps 1e-10) activations of five ReLU
layers of a classification network and ``w_l >= 0`` the learned per-channel weights (the
1 x 1 "linear heads").  Inputs are first shifted and scaled channel-wise
(``(x - shift) / scale``, the constants of the reference implementation).  The module
names follow torchvision's ``features`` indices, so torchvision's AlexNet / VGG-16 files
and the ``lpips`` package's heads load as they are."""

from __future__ import annotations

import torch
from torch import Tensor, nn

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# (kind, out_channels, kernel, stride, padding) per layer of torchvision's ``features``;
# "M" a 3 x 3 / stride 2 max pool (AlexNet) or 2 x 2 / stride 2 (VGG)
ALEXNET = [("C", 64, 11, 4, 2), "R", "M", ("C", 192, 5, 1, 2), "R", "M", ("C", 384, 3, 1, 1), "R"]
ALEXNET += [("C", 256, 3, 1, 1), "R", ("C", 256, 3, 1, 1), "R"]
VGG16 = []
for width, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
    VGG16 += [("C", width, 3, 1, 1), "R"] * convs + ["M"]
VGG16 = VGG16[:-1]  # relu5_3 is the last layer LPIPS uses

# LPIPS's five taps: the end (exclusive) of each slice of ``features``
TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
LAYERS = {"alex": ALEXNET, "vgg": VGG16}


def features_net(net: str) -> nn.Sequential:
    """torchvision's ``features`` of AlexNet (``net="alex"``) or VGG-16 (``"vgg"``), up to
    the last layer LPIPS reads."""
    layers, c = [], 3
    pool = (3, 2) if net == "alex" else (2, 2)
    for spec in LAYERS[net]:
        if spec == "R":
            layers.append(nn.ReLU())
        elif spec == "M":
            layers.append(nn.MaxPool2d(*pool))
        else:
            _, out, k, s, p = spec
            layers.append(nn.Conv2d(c, out, k, s, p))
            c = out
    return nn.Sequential(*layers)


class Head(nn.Module):
    """A 1 x 1 linear head ``w_l`` (dropout first, as the reference trains it; inactive in eval)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """``LPIPS(net)(x, ref)``: the distance per sample ``[B]`` of images in [-1, 1] (1 or 3
    channels; grey is repeated to RGB).  ``features`` holds the backbone (torchvision's
    state dict keys ``features.<i>.*``), ``lin<l>.model.1.weight`` the heads (the ``lpips``
    package's file)."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in TAPS:
            raise ValueError(f"LPIPS net {net!r}: choose from {', '.join(TAPS)}")
        self.net = net
        self.features = features_net(net)
        for l, end in enumerate(TAPS[net]):  # noqa: E741
            width = [m.out_channels for m in self.features[:end] if isinstance(m, nn.Conv2d)][-1]
            self.add_module(f"lin{l}", Head(width))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        """The unit-normalized activations ``f_l(x)`` of the five taps."""
        h = (x.expand(-1, 3, -1, -1) - self.shift) / self.scale
        out, start = [], 0
        for end in TAPS[self.net]:
            h = self.features[start:end](h)
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            start = end
        return out

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        d = 0
        for l, (a, b) in enumerate(zip(self.taps(x), self.taps(ref))):  # noqa: E741
            d = d + getattr(self, f"lin{l}").model((a - b) ** 2).mean((2, 3))
        return d.reshape(-1)
