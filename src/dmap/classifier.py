"""A small MNIST classifier whose penultimate features define the Frechet distance
``fd-mnist`` (the digits' analogue of FID)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmap.utils import seeded_init

FEATURES = 128


class DigitNet(nn.Module):
    """Three conv blocks, global average pooling, a 128-d feature layer and 10 logits;
    input ``[B, 1, 32, 32]`` in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(128, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``[B, 128]``."""
        return self.features(self.convs(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


def train_classifier(
    x: Tensor, labels: Tensor, *, epochs: int = 16, batch_size: int = 128, lr: float = 3e-3, seed: int = 0
) -> DigitNet:
    """Train :class:`DigitNet` with random shifts of up to 2 px (Adam, cosine decay)."""
    net = seeded_init(seed, DigitNet)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    total = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(xb), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@lru_cache(maxsize=1)
def load_classifier() -> DigitNet:
    """The shipped classifier (``assets/mnist_classifier.safetensors``)."""
    from safetensors.torch import load

    net = DigitNet()
    net.load_state_dict(load(resources.files("dmap.assets").joinpath("mnist_classifier.safetensors").read_bytes()))
    return net.eval()


@torch.no_grad()
def features(x: Tensor, batch_size: int = 500) -> Tensor:
    """``fd-mnist`` features ``[N, 128]`` (float64) of digits ``[N, 1, 32, 32]`` in [-1, 1]."""
    net = load_classifier()
    return torch.cat([net.embed(x[i : i + batch_size].float()) for i in range(0, len(x), batch_size)]).double()


@torch.no_grad()
def predict(x: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted digit classes ``[N]``."""
    net = load_classifier()
    return torch.cat([net(x[i : i + batch_size].float()).argmax(1) for i in range(0, len(x), batch_size)])
