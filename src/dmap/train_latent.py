"""Training a latent diffusion prior on small images (``mnist-latent``): a diffusers
``AutoencoderKL``, then a diffusers ``UNet2DConditionModel`` on its latents with one fixed
empty condition (a zero embedding, ``prompt_embedding.safetensors``: the layout of Stable
Diffusion run with the empty prompt, so that ``ControlNetModel.from_unet`` builds its
estimator as for Stable Diffusion), saved as a diffusers folder (``vae/``, ``unet/``,
``scheduler/``) that :func:`dmap.load_prior` and diffusers' own ``from_pretrained`` read.

1. Autoencoder (Rombach et al. 2022, KL-regularized): ``E(x) -> (mu, sigma)``,
   ``z = mu + sigma n``, loss ``||D(z) - x||^2 + w_KL KL(N(mu, sigma^2) || N(0, I))``.
2. Scaling: ``s = 1 / std(mu(x))`` over the training images (the VAE's
   ``scaling_factor``), so that the diffusion sees latents of unit variance.
3. Prior: epsilon-MSE on ``z0 = s mu(x)`` with the linear schedule (DDPM), as
   :func:`dmap.train.train_prior`.

Both stages use the resumable loop of :mod:`dmap.train` (checkpoints and loss logs in
``OUT/vae.run`` and ``OUT/unet.run``; EMA weights are saved).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dmap import parallel
from dmap.priors.latent import PromptUNet
from dmap.rng import randn
from dmap.schedule import Schedule
from dmap.train import _fit, _noised
from dmap.utils import save_safetensors, seeded_init, short_sha256, write_json_atomic

# 32 x 32 x 1 digits -> 4 x 8 x 8 latents (three blocks: two 2x downsamplings)
AE_CONFIG = {
    "in_channels": 1,
    "out_channels": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": 32,
}
UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [48, 96],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}
KL_WEIGHT = 1e-6


def train_latent_prior(
    data: Tensor,
    out: str | Path,
    *,
    ae_steps: int = 4000,
    steps: int = 20000,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    checkpoint_every: int = 500,
    ae_config: dict | None = None,
    unet_config: dict | None = None,
    progress: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> Path:
    """Train the autoencoder (``ae_steps``) and the latent prior (``steps``) on ``device`` from ``data
    [N, C, H, W]`` in [-1, 1]; writes the diffusers folder ``out`` (plus ``out/dmap.json``:
    data hash, steps, scaling factor) and returns it.  ``progress(step, loss)`` counts the
    steps of both stages (the prior's from ``ae_steps + 1``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    out = Path(out)
    ae_config = {**AE_CONFIG, **(ae_config or {}), "in_channels": data.shape[1], "out_channels": data.shape[1]}
    unet_config = {**UNET_CONFIG, **(unet_config or {})}
    data_id = {"n": len(data), "sha256_16": short_sha256(data)}
    training = {"batch_size": batch_size, "lr": lr, "seed": seed}
    stage = (lambda offset: lambda step, loss: progress(offset + step, loss)) if progress else (lambda offset: None)

    data = data.to(device)
    fit = {"lr": lr, "warmup": 200, "ema_decay": 0.999, "seed": seed, "checkpoint_every": checkpoint_every, "device": device}
    vae = _fit(
        seeded_init(seed, lambda: AutoencoderKL(**ae_config)),
        _autoencoder_loss(data, batch_size),
        out / "vae.run",
        {"autoencoder": ae_config, "data": data_id, "training": training, "kl_weight": KL_WEIGHT},
        steps=ae_steps,
        progress=stage(0),
        **fit,
    )
    with torch.no_grad():
        mu = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in data.split(256)])
    scaling = float(1 / mu.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = mu * scaling
    schedule = Schedule.linear()

    def prior_loss(net: torch.nn.Module, gen: torch.Generator) -> Tensor:
        _, t, noise, z_t = _noised(latents, schedule, batch_size, gen)
        z_t, t, noise = parallel.shard(z_t, t, noise)
        return ((net(z_t, t) - noise) ** 2).mean()

    empty = torch.zeros(1, 1, unet_config["cross_attention_dim"])
    net = _fit(
        seeded_init(seed, lambda: PromptUNet(UNet2DConditionModel(**unet_config), empty)),
        prior_loss,
        out / "unet.run",
        {"unet": unet_config, "latents": short_sha256(latents), "training": training},
        steps=steps,
        progress=stage(ae_steps),
        **fit,
    )
    if parallel.is_main():
        record = {"data": data_id, "training": {**training, "ae_steps": ae_steps, "steps": steps}, "kl_weight": KL_WEIGHT}
        _save_folder(out, vae, net, schedule, {**record, "scaling_factor": scaling})
    return out


def _autoencoder_loss(data: Tensor, batch_size: int) -> Callable[[torch.nn.Module, torch.Generator], Tensor]:
    """The autoencoder's loss on a batch of ``data``: reconstruction MSE plus ``KL_WEIGHT`` KL."""

    def loss(vae: torch.nn.Module, gen: torch.Generator) -> Tensor:
        (x,) = parallel.shard(data[torch.randint(len(data), (batch_size,), generator=gen).to(data.device)])
        post = vae.encode(x).latent_dist
        (n,) = parallel.shard(randn((batch_size, *post.mean.shape[1:]), gen, post.mean))
        z = post.mean + post.std * n
        return ((vae.decode(z).sample - x) ** 2).mean() + KL_WEIGHT * post.kl().mean()

    return loss


def _save_folder(out: Path, vae: torch.nn.Module, net: PromptUNet, schedule: Schedule, record: dict) -> None:
    """The diffusers folder ``out``: vae/, unet/, scheduler/, the zero prompt embedding and dmap.json."""
    from diffusers import DDPMScheduler

    vae.save_pretrained(out / "vae")
    net.unet.save_pretrained(out / "unet")
    save_safetensors(
        out / "prompt_embedding.safetensors", {"embedding": net.embedding}, metadata={"prompt": "(none: a zero embedding)"}
    )
    c = schedule.config
    scheduler = DDPMScheduler(num_train_timesteps=c.T, beta_schedule="linear", beta_start=c.beta_start, beta_end=c.beta_end)
    scheduler.save_pretrained(out / "scheduler")
    write_json_atomic(out / "dmap.json", record)
