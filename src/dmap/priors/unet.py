"""The library's own small epsilon-predicting UNet and the prior that wraps it.

A DDPM UNet (Ho et al. 2020) cut to size for 32 x 32 digits: sinusoidal time
embedding, residual blocks with group norm, self-attention at the lowest resolution,
strided-convolution down- and nearest-neighbour up-sampling, skip connections by
concatenation.  Output layers are zero-initialized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmap.config import Config, ConfigError
from dmap.priors.network import NetworkPrior
from dmap.schedule import Schedule, ScheduleConfig
from dmap.utils import WeightsError, load_safetensors, load_state, read_json


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer timesteps ``t [B]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(1) * freqs
    return torch.cat([args.cos(), args.sin()], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c: int, groups: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = _zero(nn.Conv2d(c, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


@dataclass(frozen=True)
class UNetConfig(Config):
    """The architecture of a :class:`UNet` (saved in the prior's ``.json``)."""

    in_channels: int = 1
    channels: int = 32
    mults: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 1
    attention: tuple[int, ...] = (8,)
    size: int = 32
    groups: int = 8
    dropout: float = 0.0
    patch: int = 1


@dataclass(frozen=True)
class PriorConfig(Config):
    """Everything saved beside a prior's weights: its name, architecture, schedule, and
    what it was trained on and how (free-form records)."""

    name: str
    architecture: UNetConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


class UNet(nn.Module):
    """``eps(x_t, t)`` for images ``[B, in_channels, size, size]``.

    The image is first folded into ``patch x patch`` blocks (pixel unshuffle; unfolded
    at the output), which buys speed on the CPU.  ``channels * mults[i]`` channels at
    resolution ``size / patch / 2^i``, ``res_blocks``
    residual blocks per level on the way down (one more on the way up), attention at
    the resolutions in ``attention``."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        in_channels, channels, mults, res_blocks = config.in_channels, config.channels, config.mults, config.res_blocks
        attention, size, groups, dropout, patch = (config.attention, config.size, config.groups, config.dropout, config.patch)
        t_dim = 4 * channels
        self.channels = channels
        self.patch = patch
        self.time = nn.Sequential(nn.Linear(channels, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(in_channels * patch * patch, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur, res = [channels], channels, size // patch
        for i, m in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(
                    nn.ModuleList(
                        [
                            ResBlock(cur, channels * m, t_dim, groups, dropout),
                            Attention(channels * m, groups) if res in attention else nn.Identity(),
                        ]
                    )
                )
                cur = channels * m
                skips.append(cur)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, t_dim, groups, dropout), Attention(cur, groups), ResBlock(cur, cur, t_dim, groups, dropout)]
        )
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(
                    nn.ModuleList(
                        [
                            ResBlock(cur + skips.pop(), channels * m, t_dim, groups, dropout),
                            Attention(channels * m, groups) if res in attention else nn.Identity(),
                        ]
                    )
                )
                cur = channels * m
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, cur, 3, padding=1)))
                res *= 2
        self.out = nn.Sequential(
            nn.GroupNorm(groups, cur), nn.SiLU(), _zero(nn.Conv2d(cur, in_channels * patch * patch, 3, padding=1))
        )

    def embed(self, t: Tensor) -> Tensor:
        """Time embedding ``[B, 4 channels]`` of integer timesteps ``t [B]``."""
        return self.time(timestep_embedding(t, self.channels))

    def fold(self, x: Tensor) -> Tensor:
        """Pixel unshuffle into ``patch x patch`` blocks (identity when ``patch = 1``)."""
        return F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x

    def encode(self, h: Tensor, temb: Tensor) -> list[Tensor]:
        """The contracting path from the stem features ``h = conv_in(fold(x))``: every skip
        feature, then the middle block's output last."""
        hs = [h]
        for layer in self.down:
            h = layer[1](layer[0](h, temb)) if isinstance(layer, nn.ModuleList) else layer(h)
            hs.append(h)
        hs.append(self.mid[2](self.mid[1](self.mid[0](h, temb)), temb))
        return hs

    def decode(self, hs: list[Tensor], temb: Tensor) -> Tensor:
        """The expanding path from :meth:`encode`'s features to ``eps``."""
        hs = list(hs)
        h = hs.pop()
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], 1), temb))
            else:
                h = layer(h)
        h = self.out(h)
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h

    def forward(self, x: Tensor, t: Tensor, residuals: list[Tensor] | None = None) -> Tensor:
        """``eps(x_t, t)``; ``residuals`` (one per :meth:`encode` feature, e.g. from a
        ControlNet adapter) are added to the skip and middle features first."""
        temb = self.embed(t)
        hs = self.encode(self.conv_in(self.fold(x)), temb)
        if residuals is not None:
            hs = [h + r for h, r in zip(hs, residuals, strict=True)]
        return self.decode(hs, temb)


def load_unet_prior(weights: str | Path, config: str | Path | None = None, name: str | None = None) -> NetworkPrior:
    """Load a prior trained with ``dmap train`` (a :class:`UNet` in a :class:`NetworkPrior`)
    from safetensors ``weights`` and its JSON description (:class:`PriorConfig`; default:
    the same path with ``.json``).  Raises :class:`WeightsError` naming the file that is
    missing, unreadable or mismatched."""
    weights = Path(weights)
    state = load_safetensors(weights, "prior weights file")
    config = Path(config) if config else weights.with_suffix(".json")
    try:
        cfg = PriorConfig.from_dict(read_json(config, f"description of the prior {weights.name}"), config.name)
    except ConfigError as e:
        raise WeightsError(str(e)) from None
    net = load_state(UNet(cfg.architecture), state, weights, f"the architecture in {config.name}")
    arch = cfg.architecture
    return NetworkPrior(net.eval(), Schedule(cfg.schedule), (arch.in_channels, arch.size, arch.size), name or cfg.name)
