"""Cross-check of dmap's DDRM and DiffPIR with deepinv's, on the same prior, images and
measurements (its own environment: ``pip install deepinv`` brings torch 2.14 and
torchvision; not part of CI).

    python3 -m venv .venv-deepinv && . .venv-deepinv/bin/activate && pip install deepinv && pip install -e .
    python benchmarks/peers/deepinv_check.py [--images 16] [--steps 100] [--task inpaint-random]

The shipped `mnist` prior becomes a deepinv denoiser (:func:`dmap.interop.deepinv.denoiser_from_prior`,
which reproduces dmap's x0_hat at the schedule's noise levels to float precision — see
tests/test_interop_deepinv.py); ``--task`` on test digits with sigma_y = 0.05 in
[-1, 1] units (0.025 in deepinv's [0, 1]); both libraries get the same mask and the same
noisy measurements, DDRM the same noise levels (dmap's respaced timesteps), DiffPIR the
same lambda and zeta (and dmap's DiffPIR with its shipped preset for the budget).  ``--task``:
inpaint-random (default) or inpaint-box.  Writes ``benchmarks/results/peers/deepinv_check_<task>.md``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import deepinv as dinv
import numpy as np
import torch

import dmap
from dmap.data import mnist_spread
from dmap.interop.deepinv import denoiser_from_prior, sigma_of
from dmap.metrics import psnr
from dmap.rng import seeded

OUT = Path(__file__).resolve().parent.parent / "results" / "peers"


def mean_se(v: np.ndarray, sign: str = "") -> str:
    return f"{v.mean():{sign}.2f} ± {v.std(ddof=1) / math.sqrt(len(v)):.2f}"


@dataclass
class Problem:
    """The shared problem: test digits ``x`` (ids ``ids``), dmap's ``task`` and measurement
    ``y``, the same measurement as deepinv sees it (``y01``: a masked [0, 1] image, and
    ``physics``), and the solvers' per-image generators ``gens``."""

    prior: object
    x: torch.Tensor
    ids: torch.Tensor
    task: object
    y: torch.Tensor
    y01: torch.Tensor
    physics: object
    gens: list


def problem(task_name: str, images: int) -> Problem:
    prior = dmap.load_prior("mnist")
    x, ids = mnist_spread(images)
    task = dmap.make_task(task_name, prior.shape, sigma_y=0.05, generator=seeded(0))
    op = task.operator
    y = task.simulate(x, generator=[seeded(1, int(i)) for i in ids])
    y01 = torch.zeros(len(x), 32 * 32)
    y01[:, op.order[: op.y_shape[0]]] = (y + 1) / 2
    physics = dinv.physics.Inpainting(
        img_size=(1, 32, 32), mask=op.mask.float()[None], noise_model=dinv.physics.GaussianNoise(sigma=0.025)
    )
    return Problem(prior, x, ids, task, y, y01, physics, [seeded(2, int(i)) for i in ids])


def deepinv_ddrm(p: Problem, steps: int) -> torch.Tensor:
    """PSNR per image of deepinv's DDRM (eta 0.85, eta_b 1) on dmap's uniform grid of ``steps``
    noise levels."""
    torch.manual_seed(0)
    sigmas = np.array([sigma_of(p.prior, t) for t in p.prior.schedule.timesteps(steps)])
    ddrm = dinv.sampling.DDRM(denoiser_from_prior(p.prior), sigmas=sigmas, eta=0.85, etab=1.0)
    out = torch.cat([ddrm(p.y01[i : i + 1].reshape(1, 1, 32, 32), p.physics) for i in range(len(p.x))])
    return psnr(2 * out - 1, p.x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--task", choices=["inpaint-random", "inpaint-box"], default="inpaint-random")
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = problem(args.task, args.images)
    prior, x, task, y, y01, physics, gens = p.prior, p.x, p.task, p.y, p.y01, p.physics, p.gens
    den = denoiser_from_prior(prior)
    rows = {}
    with torch.no_grad():
        ours = dmap.solve("ddrm", prior, task, y, steps=args.steps, generator=gens)
        rows["ddrm"] = (psnr(ours, x).numpy(), deepinv_ddrm(p, args.steps).numpy())
        torch.manual_seed(0)
        dp = dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), sigma=0.025, max_iter=args.steps, zeta=0.3, lambda_=7.0)
        theirs = psnr(2 * torch.cat([dp(y01[i : i + 1].reshape(1, 1, 32, 32), physics) for i in range(len(x))]) - 1, x)
        for spacing in ("uniform", "quadratic"):  # deepinv's DiffPIR steps on the quadratic grid
            ours = dmap.solve("diffpir", prior, task, y, steps=args.steps, lam=7.0, zeta=0.3, spacing=spacing, generator=gens)
            rows[f"diffpir, {spacing} grid"] = (psnr(ours, x).numpy(), theirs.numpy())
        ours = dmap.solve("diffpir", prior, task, y, nfe=args.steps, generator=gens)  # dmap's preset for the budget
        rows["diffpir, dmap's preset (deepinv: lambda 7, zeta 0.3)"] = (psnr(ours, x).numpy(), theirs.numpy())
    lines = [
        f"`python benchmarks/peers/deepinv_check.py --images {args.images} --steps {args.steps}` (deepinv "
        f"{dinv.__version__}, torch {torch.__version__}): {args.task}, {args.images} test digits, sigma_y = 0.05, "
        f"prior mnist, {args.steps} steps; PSNR (dB) mean ± standard error, the difference paired per image.",
        "",
        "| method | dmap | deepinv | dmap − deepinv |",
        "|---|---|---|---|",
    ]
    for name, (a, b) in rows.items():
        lines.append(f"| {name} | {mean_se(a)} | {mean_se(b)} | {mean_se(a - b, '+')} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"deepinv_check_{args.task}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
