"""Training a diffusion prior: epsilon-MSE (Ho et al. 2020) with EMA weights, resumable.

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

from dmap.priors.unet import UNet
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
    """Train an epsilon-predicting :class:`UNet` on ``data [N, C, H, W]`` in [-1, 1].

    Writes ``out/checkpoint.pt`` every ``checkpoint_every`` steps (resumed from if
    present and of the same configuration), ``out/loss.csv`` (step, loss, seconds) and
    finally ``out/<name>.safetensors`` (EMA weights) with ``out/<name>.json`` (architecture,
    schedule, data hash, training settings).  ``progress(step, loss)`` is called each step.
    Returns the weights path."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    schedule = schedule or Schedule.linear()
    arch = dict(architecture or MNIST_ARCHITECTURE)
    arch["in_channels"], arch["size"] = data.shape[1], data.shape[2]
    config = {"name": name, "architecture": arch, "schedule": {"kind": "linear", "T": schedule.T},
              "data": {"n": len(data), "sha256_16": data_hash(data)},
              "training": {"batch_size": batch_size, "lr": lr, "warmup": warmup, "ema_decay": ema_decay, "seed": seed}}

    with torch.random.fork_rng(devices=[]):  # deterministic init without touching the global generator
        torch.manual_seed(seed)
        net = UNet(**arch)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        if json.loads(ckpt["config"]) != config:
            raise ValueError(f"{ckpt_path} belongs to another configuration; use another --out or delete it")
        net.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        step = int(ckpt["step"])

    ab = schedule.alpha_bar.float()
    net.train()
    # the loss log restarts from the checkpoint: rows past it are dropped
    log_path = out / "loss.csv"
    rows = log_path.read_text().splitlines()[1 : step + 1] if step and log_path.exists() else []
    log = log_path.open("w")
    log.write("\n".join(["step,loss,seconds", *rows]) + "\n")
    start = time.perf_counter()
    while step < steps:
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        t = torch.randint(schedule.T, (batch_size,), generator=gen)
        noise = torch.randn((batch_size, *data.shape[1:]), generator=gen)
        x0 = data[idx]
        a = ab[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = ((net(x_t, t) - noise) ** 2).mean()
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - ema_decay)
        step += 1
        log.write(f"{step},{loss.item():.6f},{time.perf_counter() - start:.1f}\n")
        if progress is not None:
            progress(step, loss.item())
        if step % checkpoint_every == 0 or step == steps:
            log.flush()
            _atomic_save({"model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                          "generator": gen.get_state(), "step": torch.tensor(step),
                          "config": json.dumps(config)}, ckpt_path)
    log.close()
    weights = out / f"{name}.safetensors"
    state = {k: v.contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(weights), metadata={"steps": str(step)})
    config["training"]["steps"] = step
    (out / f"{name}.json").write_text(json.dumps(config, indent=1) + "\n")
    return weights
