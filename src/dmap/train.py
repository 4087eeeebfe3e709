"""Training a diffusion prior, or a conditional score estimator on a frozen one:
epsilon-MSE (Ho et al. 2020) with EMA weights, resumable.

Everything random (initialization, batches, timesteps, noise) comes from one seed,
and the generator state is saved in every checkpoint, so a run interrupted and resumed
ends in the same state as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dmap.operators.tasks import DEFAULT_SIGMA_Y, make_task
from dmap.priors.unet import UNet, UNetPrior
from dmap.schedule import Schedule

CHECKPOINT = "checkpoint.pt"

# the shipped `mnist` prior: 1.1 M parameters, 2x2 pixel folding, attention at 4 x 4
MNIST_ARCHITECTURE = dict(in_channels=1, channels=32, mults=[1, 2, 2], res_blocks=1, attention=[4], size=32,
                          groups=8, dropout=0.0, patch=2)


def data_hash(x: Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
) -> torch.nn.Module:
    """The training loop shared by priors and adapters: Adam on the trainable parameters
    of ``model`` with linear warm-up and gradient clipping at 1, EMA weights, a loss log
    ``out/loss.csv`` and a resumable ``out/checkpoint.pt`` (refused if ``config``
    differs).  ``batch_loss(model, generator)`` draws a batch and returns its loss; every
    random draw comes from the one generator seeded with ``seed``.  Returns the EMA copy."""
    out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        if json.loads(ckpt["config"]) != config:
            raise ValueError(f"{ckpt_path} belongs to another configuration; use another --out or delete it")
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        step = int(ckpt["step"])

    model.train()
    # the loss log restarts from the checkpoint: rows past it are dropped
    log_path = out / "loss.csv"
    rows = log_path.read_text().splitlines()[1 : step + 1] if step and log_path.exists() else []
    log = log_path.open("w")
    log.write("\n".join(["step,loss,seconds", *rows]) + "\n")
    start = time.perf_counter()
    while step < steps:
        loss = batch_loss(model, gen)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                if p.requires_grad:
                    pe.lerp_(p, 1 - ema_decay)
        step += 1
        log.write(f"{step},{loss.item():.6f},{time.perf_counter() - start:.1f}\n")
        if progress is not None:
            progress(step, loss.item())
        if step % checkpoint_every == 0 or step == steps:
            log.flush()
            _atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                          "generator": gen.get_state(), "step": torch.tensor(step),
                          "config": json.dumps(config)}, ckpt_path)
    log.close()
    return ema.eval()


def _noised(data: Tensor, schedule: Schedule, batch_size: int, gen: torch.Generator):
    """A batch of training images ``x0``, timesteps ``t``, noise and ``x_t ~ q(x_t | x0)``."""
    idx = torch.randint(len(data), (batch_size,), generator=gen)
    t = torch.randint(schedule.T, (batch_size,), generator=gen)
    noise = torch.randn((batch_size, *data.shape[1:]), generator=gen)
    x0 = data[idx]
    return x0, t, noise, schedule.q_sample(x0, t, noise)


def _seeded_init(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` under ``seed`` without touching the global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_prior(
    data: Tensor,
    out: str | Path,
    *,
    name: str = "prior",
    architecture: dict | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-4,
    warmup: int = 200,
    ema_decay: float = 0.999,
    seed: int = 0,
    checkpoint_every: int = 500,
    schedule: Schedule | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Path:
    """Train an epsilon-predicting :class:`UNet` on ``data [N, C, H, W]`` in [-1, 1]:
    ``E ||eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t)||^2`` (Ho et al. 2020).

    Writes ``out/checkpoint.pt`` every ``checkpoint_every`` steps (resumed from if
    present and of the same configuration), ``out/loss.csv`` (step, loss, seconds) and
    finally ``out/<name>.safetensors`` (EMA weights) with ``out/<name>.json`` (architecture,
    schedule, data hash, training settings).  ``progress(step, loss)`` is called each step.
    Returns the weights path."""
    from safetensors.torch import save_file

    out = Path(out)
    schedule = schedule or Schedule.linear()
    arch = dict(architecture or MNIST_ARCHITECTURE)
    arch["in_channels"], arch["size"] = data.shape[1], data.shape[2]
    config = {"name": name, "architecture": arch, "schedule": {"kind": "linear", "T": schedule.T},
              "data": {"n": len(data), "sha256_16": data_hash(data)},
              "training": {"batch_size": batch_size, "lr": lr, "warmup": warmup, "ema_decay": ema_decay, "seed": seed}}

    def batch_loss(net: torch.nn.Module, gen: torch.Generator) -> Tensor:
        _, t, noise, x_t = _noised(data, schedule, batch_size, gen)
        return ((net(x_t, t) - noise) ** 2).mean()

    ema = _fit(_seeded_init(seed, lambda: UNet(**arch)), batch_loss, out, config, steps=steps, lr=lr,
               warmup=warmup, ema_decay=ema_decay, seed=seed, checkpoint_every=checkpoint_every, progress=progress)
    weights = out / f"{name}.safetensors"
    state = {k: v.contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(weights), metadata={"steps": str(steps)})
    config["training"]["steps"] = steps
    (out / f"{name}.json").write_text(json.dumps(config, indent=1) + "\n")
    return weights


def train_cse(
    prior: UNetPrior,
    task: str,
    data: Tensor,
    indices: list[int],
    out: str | Path,
    *,
    sigma_y: float = DEFAULT_SIGMA_Y,
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
    batch; only the adapter is trained.  Writes the adapter to ``out`` (``.safetensors``)
    and its description beside it (``.json``); checkpoints and the loss log go to the
    folder ``<out>.run`` and a rerun resumes from them, as in :func:`train_prior`.
    Returns ``out``."""
    from dmap.cse import CSE, adapter_for, condition

    if len(indices) != len(data):
        raise ValueError(f"{len(indices)} indices for {len(data)} images")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the adapter file must end in .safetensors")
    schedule = prior.schedule
    make_task(task, prior.shape, sigma_y=sigma_y)  # validates the task name before any work
    prior.requires_grad_(False)
    meta = {"task": task, "prior": prior.name, "prior_fingerprint": prior.fingerprint(), "sigma_y": sigma_y,
            "images": {"n": len(data), "indices": [int(i) for i in indices], "sha256_16": data_hash(data)},
            "training": {"batch_size": batch_size, "lr": lr, "warmup": warmup, "ema_decay": ema_decay, "seed": seed}}

    def batch_loss(adapter: torch.nn.Module, gen: torch.Generator) -> Tensor:
        x0, t, noise, x_t = _noised(data, schedule, batch_size, gen)
        sim = make_task(task, prior.shape, sigma_y=sigma_y, generator=gen)
        cond = condition(sim.operator, sim.simulate(x0, gen))
        return ((prior.net(x_t, t, adapter(x_t, t, cond)) - noise) ** 2).mean()

    ema = _fit(_seeded_init(seed, lambda: adapter_for(prior)), batch_loss, out.with_suffix(".run"), meta,
               steps=steps, lr=lr, warmup=warmup, ema_decay=ema_decay, seed=seed,
               checkpoint_every=checkpoint_every, progress=progress)
    meta["training"]["steps"] = steps
    return CSE(prior, ema, meta).save(out)
