"""The ADM UNet (Dhariwal & Nichol 2021, guided-diffusion), for the published checkpoints.

Written here, with the module and parameter names of guided-diffusion's ``UNetModel``
(``time_embed.{0,2}``, ``input_blocks.i.j``, ``middle_block.{0,1,2}``,
``output_blocks.i.j``, ``out.{0,2}``; residual blocks ``in_layers``, ``emb_layers``,
``out_layers``, ``skip_connection``; attention ``norm``, ``qkv``, ``proj_out``), so that a
published state dict loads with ``load_state_dict(strict=True)``.  Configurations are
guided-diffusion's command-line flags (:class:`ADMConfig`); two are named:

- ``adm-ffhq256``: the DPS FFHQ model ``ffhq_10m.pt`` (93.6 M parameters);
- ``adm-imagenet256``: ``256x256_diffusion_uncond.pt`` (552.8 M parameters).

Loading (:func:`load_adm_prior`) unpickles nothing but tensors (``weights_only=True``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dmap.config import Config, ConfigError
from dmap.priors.checkpoint import check_fits, read_state_dict
from dmap.priors.network import NetworkPrior
from dmap.priors.unet import timestep_embedding
from dmap.schedule import Schedule, ScheduleConfig
from dmap.utils import WeightsError

# guided-diffusion's channel multipliers when the flag channel_mult is empty
DEFAULT_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
# flags of guided-diffusion's scripts that do not change what the network computes
IGNORED_FLAGS = {
    "use_fp16",
    "timestep_respacing",
    "use_kl",
    "rescale_learned_sigmas",
    "model_path",
    "batch_size",
    "num_samples",
    "clip_denoised",
    "use_ddim",
}


@dataclass(frozen=True)
class ADMConfig(Config):
    """guided-diffusion's model and diffusion flags, with the defaults of its scripts.
    ``attention_resolutions`` are pixel sizes (the flag ``"32,16,8"``); an empty
    ``channel_mult`` takes guided-diffusion's default for the image size."""

    image_size: int = 64
    in_channels: int = 3
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = ()
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    learn_sigma: bool = False
    dropout: float = 0.0
    class_cond: bool = False
    predict_xstart: bool = False
    rescale_timesteps: bool = False
    noise_schedule: str = "linear"
    diffusion_steps: int = 1000
    use_checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.class_cond:
            raise ConfigError("class-conditional ADM models are not supported: dmap needs an unconditional prior")
        if self.rescale_timesteps and self.diffusion_steps != 1000:
            raise ConfigError("rescale_timesteps with diffusion_steps other than 1000 is not supported")
        if not self.channel_mult and self.image_size not in DEFAULT_MULT:
            raise ConfigError(f"no default channel_mult for image_size {self.image_size}; give channel_mult")
        if self.noise_schedule not in ("linear", "cosine"):
            raise ConfigError(f"unknown noise_schedule {self.noise_schedule!r}")

    @property
    def mult(self) -> tuple[float, ...]:
        return self.channel_mult or DEFAULT_MULT[self.image_size]

    def schedule(self) -> Schedule:
        """guided-diffusion's schedule: linear betas scaled by 1000 / T, or cosine."""
        T = self.diffusion_steps
        if self.noise_schedule == "cosine":
            return Schedule(ScheduleConfig("cosine", T))
        return Schedule(ScheduleConfig("linear", T, 1e-4 * 1000 / T, 0.02 * 1000 / T))

    @classmethod
    def from_flags(cls, flags: dict[str, Any], what: str = "ADM flags") -> ADMConfig:
        """From guided-diffusion's flags as its scripts take them: strings such as
        ``"32,16,8"``, ``"True"`` or ``""`` are read as the flag means; flags that do not
        change the network (``use_fp16``, ``timestep_respacing``, ...) are ignored."""
        values = {}
        for key, value in flags.items():
            if key in IGNORED_FLAGS:
                continue
            if key in ("attention_resolutions", "channel_mult") and isinstance(value, str):
                value = [float(v) if key == "channel_mult" else int(v) for v in value.split(",") if v.strip()]
            elif isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif isinstance(value, str) and key != "noise_schedule":
                try:
                    value = float(value) if "." in value else int(value)
                except ValueError:
                    pass
            values[key] = value
        return cls.from_dict(values, what)


# (one published configuration a line, like a table: kept as written)
ADM_CONFIGS: dict[str, ADMConfig] = {
    "adm-ffhq256": ADMConfig(image_size=256, num_channels=128, num_res_blocks=1, attention_resolutions=(16,),
                             num_heads=4, num_head_channels=64, resblock_updown=True, learn_sigma=True),
    "adm-imagenet256": ADMConfig(image_size=256, num_channels=256, num_res_blocks=2, attention_resolutions=(32, 16, 8),
                                 num_head_channels=64, resblock_updown=True, learn_sigma=True),
}  # fmt: skip


class GroupNorm32(nn.GroupNorm):
    """Group normalization computed in float32 whatever the input dtype (32 groups)."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class Downsample(nn.Module):
    """Halve the resolution: a strided 3x3 convolution (``op``), or average pooling."""

    def __init__(self, channels: int, conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest neighbour), then a 3x3 convolution (``conv``) if asked."""

    def __init__(self, channels: int, conv: bool) -> None:
        super().__init__()
        if conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class ResBlock(nn.Module):
    """``skip(x) + out_layers(in_layers(x) + emb)``; with ``scale_shift`` the embedding
    gives a scale and a shift of the normalized features (FiLM); ``up`` / ``down``
    resample both paths in the middle of ``in_layers``."""

    def __init__(
        self,
        c_in: int,
        emb: int,
        dropout: float,
        c_out: int | None = None,
        scale_shift: bool = False,
        up: bool = False,
        down: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.scale_shift = scale_shift
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(GroupNorm32(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.updown = up or down
        if self.updown:
            self.h_upd = Upsample(c_in, False) if up else Downsample(c_in, False)
            self.x_upd = Upsample(c_in, False) if up else Downsample(c_in, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * c_out if scale_shift else c_out))
        self.out_layers = nn.Sequential(GroupNorm32(c_out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip_connection = nn.Identity() if c_out == c_in else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[1](self.in_layers[0](x))))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the pixels with a residual connection.  ``qkv`` is a 1x1
    convolution; its output is split into heads first, then into q, k, v (the legacy
    order of the published models) unless ``new_order``."""

    def __init__(self, channels: int, heads: int, head_channels: int, new_order: bool, use_checkpoint: bool) -> None:
        super().__init__()
        self.heads = heads if head_channels == -1 else channels // head_channels
        self.new_order = new_order
        self.use_checkpoint = use_checkpoint
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        ch, n = c // self.heads, flat.shape[-1]
        if self.new_order:
            q, k, v = (part.reshape(b * self.heads, ch, n) for part in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.heads, 3 * ch, n).split(ch, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj_out(a.transpose(1, 2).reshape(b, c, n))
        return (flat + h).reshape(b, c, *spatial)


class TimestepSequential(nn.Sequential):
    """Layers applied in order; residual blocks also receive the time embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """The ADM UNet for ``config``: ``net(x_t, t)`` returns ``[B, C or 2C, H, W]``."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__()
        self.config = c = config
        base, emb = c.num_channels, 4 * c.num_channels
        attention_ds = {c.image_size // r for r in c.attention_resolutions}
        heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample

        def res(c_in: int, c_out: int | None = None, **kw) -> ResBlock:
            return ResBlock(c_in, emb, c.dropout, c_out, c.use_scale_shift_norm, use_checkpoint=c.use_checkpoint, **kw)

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, c.num_head_channels, c.use_new_attention_order, c.use_checkpoint)

        self.time_embed = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = first = int(c.mult[0] * base)
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(c.in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(c.mult):
            for _ in range(c.num_res_blocks):
                layers = [res(ch, int(mult * base))]
                ch = int(mult * base)
                if ds in attention_ds:
                    layers.append(attention(ch, c.num_heads))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level < len(c.mult) - 1:
                down = res(ch, ch, down=True) if c.resblock_updown else Downsample(ch, True)
                self.input_blocks.append(TimestepSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(res(ch), attention(ch, c.num_heads), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.mult))):
            for i in range(c.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(mult * base))]
                ch = int(mult * base)
                if ds in attention_ds:
                    layers.append(attention(ch, heads_up))
                if level and i == c.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if c.resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        out_channels = c.in_channels * (2 if c.learn_sigma else 1)
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(first, out_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.config.num_channels))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def adm_unet(config: str | dict | ADMConfig) -> ADMUNet:
    """The bare ADM network with random weights: ``config`` is a name of
    :data:`ADM_CONFIGS`, a dict of guided-diffusion flags or an :class:`ADMConfig`
    (build it under ``torch.device("meta")`` to count without memory)."""
    return ADMUNet(adm_config(config))


def adm_config(config: str | dict | ADMConfig) -> ADMConfig:
    if isinstance(config, ADMConfig):
        return config
    if isinstance(config, dict):
        return ADMConfig.from_flags(config)
    if config not in ADM_CONFIGS:
        raise ValueError(f"unknown ADM configuration {config!r}; choose from {', '.join(ADM_CONFIGS)} or give flags")
    return ADM_CONFIGS[config]


def read_flags(path: str | Path) -> ADMConfig:
    """An :class:`ADMConfig` from a JSON file of guided-diffusion flags."""
    try:
        flags = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file (ADM flags)") from None
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a JSON file of ADM flags ({e.__class__.__name__})") from None
    try:
        return ADMConfig.from_flags(flags, str(path))
    except (ConfigError, ValueError) as e:
        raise WeightsError(str(e)) from None


def load_adm_prior(
    path: str | Path, config: str | dict | ADMConfig, name: str | None = None, dtype: torch.dtype = torch.float32
) -> NetworkPrior:
    """A published ADM checkpoint at ``path`` as a prior: ``config`` is a name of
    :data:`ADM_CONFIGS`, a dict of flags or an :class:`ADMConfig`.  Images are
    ``in_channels x image_size x image_size`` in [-1, 1]; with ``learn_sigma`` the
    variance channels are dropped."""
    cfg = adm_config(config)
    label = config if isinstance(config, str) else "from flags"
    state = read_state_dict(path)
    with torch.device("meta"):
        net = ADMUNet(cfg)
    check_fits(net, state, path, f"the ADM configuration {label}")
    net.load_state_dict(state, strict=True, assign=True)
    prediction = "sample" if cfg.predict_xstart else "epsilon"
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    return NetworkPrior(net.eval(), cfg.schedule(), shape, name or f"{label}:{Path(path).name}", prediction, dtype)
