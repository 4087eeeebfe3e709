"""Where dmap's DDRM and deepinv's differ on inpaint-box (its own environment, as
``deepinv_check.py``): deepinv's ``DDRM.forward`` (0.5.0) draws its fresh noise as
``std * randn / np.sqrt(2.0)``, i.e. ``1/sqrt(2)`` of the noise the DDRM update prescribes
(Kawar et al. 2022, eq. 7-8, which dmap follows).  This runs deepinv's DDRM as is and with
that one division removed (``np.sqrt(2.0)`` made 1 inside deepinv's module for the run),
on the measurements of ``deepinv_check.py --task inpaint-box``, and prints both against dmap's.

    python benchmarks/peers/deepinv_ddrm_noise.py [--images 64] [--steps 100]
"""

from __future__ import annotations

import argparse
import types

import deepinv as dinv
import deepinv.sampling.diffusion as deepinv_diffusion
import numpy as np
import torch

import dmap
from dmap.data import mnist_spread
from dmap.interop.deepinv import denoiser_from_prior, sigma_of
from dmap.metrics import psnr
from dmap.rng import seeded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prior = dmap.load_prior("mnist")
    x, ids = mnist_spread(args.images)
    task = dmap.make_task("inpaint-box", prior.shape, sigma_y=0.05, generator=seeded(0))
    op = task.operator
    y = task.simulate(x, generator=[seeded(1, int(i)) for i in ids])
    y01 = torch.zeros(len(x), 32 * 32)
    y01[:, op.order[: op.y_shape[0]]] = (y + 1) / 2
    physics = dinv.physics.Inpainting(img_size=(1, 32, 32), mask=op.mask.float()[None],
                                      noise_model=dinv.physics.GaussianNoise(sigma=0.025))  # fmt: skip
    sigmas = np.array([sigma_of(prior, t) for t in prior.schedule.timesteps(args.steps)])

    def deepinv_ddrm() -> torch.Tensor:
        torch.manual_seed(0)
        ddrm = dinv.sampling.DDRM(denoiser_from_prior(prior), sigmas=sigmas, eta=0.85, etab=1.0)
        out = torch.cat([ddrm(y01[i : i + 1].reshape(1, 1, 32, 32), physics) for i in range(len(x))])
        return psnr(2 * out - 1, x)

    with torch.no_grad():
        ours = psnr(dmap.solve("ddrm", prior, task, y, steps=args.steps, generator=[seeded(2, int(i)) for i in ids]), x)
        rows = {"deepinv DDRM as released": deepinv_ddrm()}
        sqrt = np.sqrt
        deepinv_diffusion.np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
        deepinv_diffusion.np.sqrt = lambda v: 1.0 if v == 2.0 else sqrt(v)
        rows["deepinv DDRM, noise not divided by sqrt(2)"] = deepinv_ddrm()
        deepinv_diffusion.np = np
    n = len(x) ** 0.5
    print(f"dmap DDRM: {ours.mean():.2f} ± {ours.std() / n:.2f} dB ({args.images} test digits, inpaint-box, {args.steps} steps)")
    for name, v in rows.items():
        d = ours - v
        print(f"{name}: {v.mean():.2f} ± {v.std() / n:.2f} dB; dmap − it {d.mean():+.2f} ± {d.std() / n:.2f}")


if __name__ == "__main__":
    main()
