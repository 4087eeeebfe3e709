"""dmap's DDRM against deepinv's on sr4 and inpaint-box at several budgets, and what makes
them differ (its own environment, as ``deepinv_check.py``; not part of CI).

    python benchmarks/peers/deepinv_ddrm.py [--images 32] [--nfe 20,50,100,250] [--tasks sr4,inpaint-box]

Both libraries get the shipped ``mnist`` prior (``dmap.interop.deepinv``), the same test
digits, the same operator — dmap's, handed to deepinv as a ``DecomposablePhysics`` built
from its SVD (``U``, ``V``, the singular values as the mask), so that the two see the same
coefficients — the same noisy measurements (sigma_y = 0.05 in [-1, 1], 0.025 in deepinv's
[0, 1]) and DDRM's noise levels on dmap's time grid, eta 0.85 and eta_b 1.  Columns: dmap's
DDRM; dmap's started from pure noise, as before dmap 0.6 (``ddrm_start`` replaced for the
run: ``sigma_T z`` everywhere); deepinv's as released (0.5.0), whose fresh noise is
``std * randn / sqrt(2)``; and deepinv's with that division removed (the update the DDRM
paper prescribes).  Writes
``benchmarks/results/peers/deepinv_ddrm.md``.
"""

from __future__ import annotations

import argparse
import math
import types

import deepinv as dinv
import deepinv.sampling.diffusion as deepinv_diffusion
import numpy as np
import torch
from deepinv_check import OUT, mean_se  # noqa: I001  (this folder's sibling script)

import dmap
import dmap.solvers.ddrm as ddrm
from dmap.data import mnist_spread
from dmap.interop.deepinv import denoiser_from_prior, sigma_of
from dmap.metrics import psnr
from dmap.rng import seeded


def svd_physics(op, sigma01: float) -> dinv.physics.DecomposablePhysics:
    """dmap's SVD operator as deepinv's ``U diag(mask) V^T`` on [0, 1] images (the operators
    here keep constants: ``A((x + 1) / 2) = (A(x) + 1) / 2``)."""
    s = op.singular_values().float()
    d, m = math.prod(op.x_shape), s.numel()
    pad = lambda c: torch.cat([c, c.new_zeros(c.shape[0], d - m)], 1)  # noqa: E731
    return dinv.physics.DecomposablePhysics(
        U=lambda c: op.U(c[:, :m]),
        U_adjoint=lambda y: pad(op.UT(y)),
        V=lambda c: op.V(c),
        V_adjoint=lambda x: op.VT(x),
        mask=pad(s[None]),
        noise_model=dinv.physics.GaussianNoise(sigma=sigma01),
    )


def deepinv_ddrm(prior, physics, y01: torch.Tensor, steps: int, divide: bool) -> torch.Tensor:
    """deepinv's DDRM on dmap's grid of ``steps`` noise levels, image by image; with
    ``divide=False`` its ``/ sqrt(2)`` on the fresh noise is removed for the run."""
    sigmas = np.array([sigma_of(prior, t) for t in prior.schedule.timesteps(steps)])
    ddrm = dinv.sampling.DDRM(denoiser_from_prior(prior), sigmas=sigmas, eta=0.85, etab=1.0)
    sqrt = np.sqrt
    if not divide:
        deepinv_diffusion.np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
        deepinv_diffusion.np.sqrt = lambda v: 1.0 if v == 2.0 else sqrt(v)
    try:
        torch.manual_seed(0)
        return torch.cat([ddrm(y01[i : i + 1], physics) for i in range(len(y01))]) * 2 - 1
    finally:
        deepinv_diffusion.np = np


def dmap_ddrm(prior, task, y, x, ids, steps: int, noise_start: bool) -> np.ndarray:
    """PSNR per image of dmap's DDRM; ``noise_start``: started from pure noise (before 0.6)."""
    original = ddrm.ddrm_start
    if noise_start:
        ddrm.ddrm_start = lambda y_bar, s, sigma_T, sigma_y, z: sigma_T * z
    try:
        out = dmap.solve("ddrm", prior, task, y, steps=steps, generator=[seeded(2, int(i)) for i in ids])
    finally:
        ddrm.ddrm_start = original
    return psnr(out, x).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", default="20,50,100,250")
    ap.add_argument("--tasks", default="sr4,inpaint-box")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prior = dmap.load_prior("mnist")
    x, ids = mnist_spread(args.images)
    lines = [
        f"`python benchmarks/peers/deepinv_ddrm.py --images {args.images} --nfe {args.nfe} --tasks {args.tasks}` "
        f"(deepinv {dinv.__version__}, torch {torch.__version__}, dmap {dmap.__version__}): {args.images} test digits, "
        "sigma_y = 0.05, prior mnist, DDRM eta 0.85 / eta_b 1 on dmap's noise levels; PSNR (dB) mean ± SE, "
        "differences paired per image.",
        "",
        "| task | NFE | dmap | dmap, noise start (< 0.6) | deepinv | dmap − deepinv | deepinv without / sqrt(2) | dmap − it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.tasks.split(","):
        task = dmap.make_task(name, prior.shape, sigma_y=0.05, generator=seeded(0))
        y = task.simulate(x, generator=[seeded(1, int(i)) for i in ids])
        physics = svd_physics(task.operator, 0.025)
        for n in map(int, args.nfe.split(",")):
            with torch.no_grad():
                ours = dmap_ddrm(prior, task, y, x, ids, n, noise_start=False)
                before = dmap_ddrm(prior, task, y, x, ids, n, noise_start=True)
                released = psnr(deepinv_ddrm(prior, physics, (y + 1) / 2, n, divide=True), x).numpy()
                paper = psnr(deepinv_ddrm(prior, physics, (y + 1) / 2, n, divide=False), x).numpy()
            row = f"| {name} | {n} | {mean_se(ours)} | {mean_se(before)} | {mean_se(released)} | {mean_se(ours - released, '+')} "
            lines.append(row + f"| {mean_se(paper)} | {mean_se(ours - paper, '+')} |")
            print(lines[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "deepinv_ddrm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
