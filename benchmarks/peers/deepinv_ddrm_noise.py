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

import deepinv.sampling.diffusion as deepinv_diffusion
import numpy as np
import torch
from deepinv_check import deepinv_ddrm, problem

import dmap
from dmap.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = problem("inpaint-box", args.images)
    with torch.no_grad():
        ours = psnr(dmap.solve("ddrm", p.prior, p.task, p.y, steps=args.steps, generator=p.gens), p.x)
        rows = {"deepinv DDRM as released": deepinv_ddrm(p, args.steps)}
        sqrt = np.sqrt
        deepinv_diffusion.np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
        deepinv_diffusion.np.sqrt = lambda v: 1.0 if v == 2.0 else sqrt(v)
        rows["deepinv DDRM, noise not divided by sqrt(2)"] = deepinv_ddrm(p, args.steps)
        deepinv_diffusion.np = np
    n = len(p.x) ** 0.5
    print(f"dmap DDRM: {ours.mean():.2f} ± {ours.std() / n:.2f} dB ({args.images} test digits, inpaint-box, {args.steps} steps)")
    for name, v in rows.items():
        d = ours - v
        print(f"{name}: {v.mean():.2f} ± {v.std() / n:.2f} dB; dmap − it {d.mean():+.2f} ± {d.std() / n:.2f}")


if __name__ == "__main__":
    main()
