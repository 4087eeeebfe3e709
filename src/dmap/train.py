"""Training a diffusion prior, or a conditional score estimator on a frozen one:
epsilon-MSE (Ho et al. 2020) with EMA weights, resumable.

Everything random (initialization, batches, timesteps, noise) comes from one seed,
and the generator state is saved in every checkpoint, so a run interrupted and resumed
ends in the same state as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dmap import parallel
from dmap.operators.tasks import DEFAULT_SIGMA_Y, make_task
from dmap.priors.base import Prior
from dmap.priors.unet import PriorConfig, UNet, UNetConfig
from dmap.rng import randn
from dmap.schedule import Schedule
from dmap.utils import atomic_path, frozen, plain_name, save_safetensors, seeded_init, short_sha256, write_json_atomic

CHECKPOINT = "checkpoint.pt"

# the shipped `mnist` prior: 1.1 M parameters, 2x2 pixel folding, attention at 4 x 4
MNIST_ARCHITECTURE = UNetConfig(
    in_channels=1, channels=32, mults=(1, 2, 2), res_blocks=1, attention=(4,), size=32, groups=8, dropout=0.0, patch=2
)


def _resume(path: Path, config: dict, parts: dict, gen: torch.Generator) -> int:
    """Load the checkpoint at ``path`` into ``parts`` (model, EMA, optimizer) and ``gen``;
    returns its step (0 without a checkpoint).  Refused if it has another ``config``."""
    if not path.exists():
        return 0
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    if json.loads(ckpt["config"]) != config:
        raise ValueError(f"{path} belongs to another configuration; use another --out or delete it")
    for key, part in parts.items():
        part.load_state_dict(ckpt[key])
    gen.set_state(ckpt["generator"])
    return int(ckpt["step"])


def _fit(
    model: torch.nn.Module,
    batch_loss: Callable[[torch.nn.Module, torch.Generator], Tensor],
    out: Path,
    config: dict,
    *,
    steps: int,
    lr: float,
    warmup: int,
    ema_decay: float,
    seed: int,
    checkpoint_every: int,
    progress: Callable[[int, float], None] | None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """The training loop shared by priors and adapters: Adam on the trainable parameters
    of ``model`` (moved to ``device``) with linear warm-up and gradient clipping at 1, EMA
    weights, a loss log ``out/loss.csv`` and a resumable ``out/checkpoint.pt`` (refused if
    ``config`` differs).  ``batch_loss(model, generator)`` draws a batch and returns its
    loss; every random draw comes from the one generator seeded with ``seed`` (on the CPU).
    Under ``torchrun`` the processes train one model on their shards of each batch
    (:mod:`dmap.parallel`; ``batch_loss`` keeps its rows with :func:`dmap.parallel.shard`)
    and rank 0 writes.  Returns the EMA copy."""
    main = parallel.is_main()
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    ckpt_path = out / CHECKPOINT
    parts = {"model": model, "ema": ema, "optimizer": opt}
    step = _resume(ckpt_path, config, parts, gen)
    model.train()
    # the loss log restarts from the checkpoint: rows past it are dropped
    log_path = out / "loss.csv"
    rows = log_path.read_text().splitlines()[1 : step + 1] if step and log_path.exists() else []
    log = log_path.open("w") if main else open(os.devnull, "w")
    log.write("\n".join(["step,loss,seconds", *rows]) + "\n")
    start = time.perf_counter()
    while step < steps:
        loss = batch_loss(model, gen)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        parallel.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                if p.requires_grad:
                    pe.lerp_(p, 1 - ema_decay)
        step += 1
        value = parallel.mean(loss)
        log.write(f"{step},{value:.6f},{time.perf_counter() - start:.1f}\n")
        if progress is not None:
            progress(step, value)
        if main and (step % checkpoint_every == 0 or step == steps):
            log.flush()
            with atomic_path(ckpt_path) as tmp:
                torch.save(
                    {
                        **{k: v.state_dict() for k, v in parts.items()},
                        "generator": gen.get_state(),
                        "step": torch.tensor(step),
                        "config": json.dumps(config),
                    },
                    tmp,
                )
    log.close()
    return ema.eval()


def _noised(data: Tensor, schedule: Schedule, batch_size: int, gen: torch.Generator):
    """A batch: the indices ``idx`` of training samples ``x0 = data[idx]``, timesteps ``t``,
    noise and ``x_t ~ q(x_t | x0)``."""
    idx = torch.randint(len(data), (batch_size,), generator=gen).to(data.device)
    t = torch.randint(schedule.T, (batch_size,), generator=gen).to(data.device)
    noise = randn((batch_size, *data.shape[1:]), gen, data)
    return idx, t, noise, schedule.q_sample(data[idx], t, noise)


def train_prior(
    data: Tensor,
    out: str | Path,
    *,
    name: str = "prior",
    architecture: UNetConfig = MNIST_ARCHITECTURE,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-4,
    warmup: int = 200,
    ema_decay: float = 0.999,
    seed: int = 0,
    checkpoint_every: int = 500,
    schedule: Schedule | None = None,
    progress: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> Path:
    """Train an epsilon-predicting :class:`UNet` on ``data [N, C, H, W]`` in [-1, 1] (on ``device``):
    ``E ||eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t)||^2`` (Ho et al. 2020).

    Writes ``out/checkpoint.pt`` every ``checkpoint_every`` steps (resumed from if
    present and of the same configuration), ``out/loss.csv`` (step, loss, seconds) and
    finally ``out/<name>.safetensors`` (EMA weights) with ``out/<name>.json`` (architecture,
    schedule, data hash, training settings).  ``progress(step, loss)`` is called each step.
    Returns the weights path."""
    out = Path(out)
    plain_name(name)  # (the weights go into out, nowhere else)
    schedule = schedule or Schedule.linear()
    arch = architecture.replace(in_channels=data.shape[1], size=data.shape[2])
    config = PriorConfig(
        name,
        arch,
        schedule.config,
        {"n": len(data), "sha256_16": short_sha256(data)},
        {"batch_size": batch_size, "lr": lr, "warmup": warmup, "ema_decay": ema_decay, "seed": seed},
    )

    data = data.to(device)

    def batch_loss(net: torch.nn.Module, gen: torch.Generator) -> Tensor:
        _, t, noise, x_t = _noised(data, schedule, batch_size, gen)
        x_t, t, noise = parallel.shard(x_t, t, noise)
        return ((net(x_t, t) - noise) ** 2).mean()

    ema = _fit(
        seeded_init(seed, lambda: UNet(arch)),
        batch_loss,
        out,
        config.to_dict(),
        steps=steps,
        lr=lr,
        warmup=warmup,
        ema_decay=ema_decay,
        seed=seed,
        checkpoint_every=checkpoint_every,
        progress=progress,
        device=device,
    )
    weights = out / f"{name}.safetensors"
    if not parallel.is_main():
        return weights
    save_safetensors(weights, ema.state_dict(), metadata={"steps": str(steps)})
    write_json_atomic(weights.with_suffix(".json"), config.replace(training={**config.training, "steps": steps}).to_dict())
    return weights


def train_cse(
    prior: Prior,
    task: str,
    data: Tensor,
    indices: list[int],
    out: str | Path,
    *,
    sigma_y: float = DEFAULT_SIGMA_Y,
    condition: str = "regularized",
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 1e-4,
    warmup: int = 100,
    ema_decay: float = 0.995,
    seed: int = 0,
    checkpoint_every: int = 250,
    progress: Callable[[int, float], None] | None = None,
) -> Path:
    """Train a conditional score estimator (:mod:`dmap.cse`) for ``task`` on the frozen
    ``prior`` from the images ``data [N, C, H, W]`` (``indices``: their ids, recorded):
    ``E ||eps - eps_theta(x_t, t, c(A, y))||^2`` with ``y = A(x0) + sigma_y n``, a fresh
    mask / kernel / permutation (drawn like ``make_task``), noise and timestep every
    batch; ``c`` brings ``y`` back to image space as ``condition`` says (``regularized``
    or ``pinv``, :func:`dmap.cse.condition`); only the adapter is trained.  Writes the adapter to ``out`` (``.safetensors``)
    and its description beside it (``.json``); on a latent prior with a
    ``UNet2DConditionModel`` the estimator is a ControlNet on the latents ``E(x0)``
    (:mod:`dmap.cse.controlnet`), saved in the folder ``out``.  Checkpoints and the loss log go to the
    folder ``<out>.run`` and a rerun resumes from them, as in :func:`train_prior`.
    Returns ``out``."""
    from dmap.cse import CSE, AdapterMeta, adapter_for
    from dmap.cse.controlnet import ControlNetCSE, controllable, new_controlnet

    if len(indices) != len(data):
        raise ValueError(f"{len(indices)} indices for {len(data)} images")
    out = Path(out)
    latent = controllable(prior)
    if latent == (out.suffix == ".safetensors"):
        raise ValueError(f"{out}: the estimator of a latent prior is a folder, the adapter of a pixel prior a .safetensors file")
    make_task(task, prior.image_shape, sigma_y=sigma_y)  # validates the task name before any work
    meta = AdapterMeta(
        task,
        prior.name,
        prior.fingerprint(),
        sigma_y,
        {"n": len(data), "indices": [int(i) for i in indices], "sha256_16": short_sha256(data)},
        {"batch_size": batch_size, "lr": lr, "warmup": warmup, "ema_decay": ema_decay, "seed": seed},
        "regularized" if latent else condition,
    )

    loss = _cse_loss(prior, task, data.to(prior.device), meta, batch_size, condition, latent)
    with frozen(prior):  # only the adapter learns; the caller's prior is left as it was
        ema = _fit(
            seeded_init(seed, lambda: new_controlnet(prior) if latent else adapter_for(prior)),
            loss,
            out.with_suffix(".run") if out.suffix == ".safetensors" else out.with_name(out.name + ".run"),
            meta.to_dict(),
            steps=steps,
            lr=lr,
            warmup=warmup,
            ema_decay=ema_decay,
            seed=seed,
            checkpoint_every=checkpoint_every,
            progress=progress,
            device=prior.device,
        )
    estimator = (ControlNetCSE if latent else CSE)(prior, ema, meta.replace(training={**meta.training, "steps": steps}))
    return estimator.save(out) if parallel.is_main() else out


def _cse_loss(prior: Prior, task: str, data: Tensor, meta, batch_size: int, condition: str, latent: bool):
    """The estimator's epsilon-MSE on a batch of fresh pairs ``(x0, y = A(x0) + n)`` (a fresh
    task draw each batch): on pixels, the adapter's input from ``y`` by ``condition``; on a
    latent prior, ``z0 = E(x0)`` and the ControlNet's control image of ``y``."""
    from dmap.cse import condition as adapter_input
    from dmap.cse.adapter import control_image
    from dmap.cse.controlnet import ControlNetCSE

    schedule, sigma_y = prior.schedule, meta.sigma_y
    if not latent:

        def pixel_loss(adapter: torch.nn.Module, gen: torch.Generator) -> Tensor:
            idx, t, noise, x_t = _noised(data, schedule, batch_size, gen)
            sim = make_task(task, prior.shape, sigma_y=sigma_y, generator=gen).to(data.device)
            cond = adapter_input(sim.operator, sim.simulate(data[idx], gen), condition, sigma_y)
            x_t, t, noise, cond = parallel.shard(x_t, t, noise, cond)
            return ((prior.net(x_t, t, adapter(x_t, t, cond)) - noise) ** 2).mean()

        return pixel_loss
    with torch.no_grad():
        codes = torch.cat([prior.encode(chunk) for chunk in data.split(64)])

    def latent_loss(adapter: torch.nn.Module, gen: torch.Generator) -> Tensor:
        idx, t, noise, z_t = _noised(codes, schedule, batch_size, gen)
        sim = make_task(task, prior.image_shape, sigma_y=sigma_y, generator=gen).to(data.device)
        cond = control_image(sim.operator, sim.simulate(data[idx], gen), sigma_y)
        z_t, t, noise, cond = parallel.shard(z_t, t, noise, cond)
        return ((ControlNetCSE(prior, adapter, meta).eps(z_t, t, cond) - noise) ** 2).mean()

    return latent_loss
