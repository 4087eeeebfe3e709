"""DPS vs DSG vs DMAP on the exact Gaussian-mixture prior at an equal budget, with the
exact posterior mean (the MMSE estimate, closed form for the mixture) as an oracle row.

    python benchmarks/gmm_tasks.py [--images 32] [--nfe 1000]

A `dmap bench` call into ``benchmarks/results/gmm_tasks/`` (resumable) plus the rows
``exact-mmse`` computed on the same images and measurements; the table goes to
``benchmarks/results/gmm_tasks/table.md``.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import PAPER_TASKS, RESULTS, bench
from dmap.bench import Bench, markdown
from dmap.metrics import psnr, ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    args = ap.parse_args()
    out = RESULTS / "gmm_tasks"
    cells = bench("gmm-mnist", PAPER_TASKS, ["dps", "dsg", "dmap"], out, images=args.images, nfe=args.nfe)
    b = Bench.open(out)
    rows = []
    for task_name in PAPER_TASKS:
        task, y = b.task(task_name)
        post = b.prior.mixture.condition(task.operator.matrix(), task.sigma_y)
        mmse = post.mean(y.reshape(len(y), -1).double()).float().reshape(b.x.shape)
        p = psnr(mmse, b.x).numpy()
        rows.append(
            {
                "task": task_name,
                "method": "exact-mmse",
                "prior": "gmm-mnist",
                "n_images": len(p),
                "nfe_budget": args.nfe,
                "nfe": 0,
                "psnr_mean": float(p.mean()),
                "psnr_se": float(p.std(ddof=1) / np.sqrt(len(p))),
                "ssim_mean": float(ssim(mmse, b.x).mean()),
                "seconds_per_image": float("nan"),
                "peak_mem_mb": float("nan"),
                "psnr_per_image": p.tolist(),
            }
        )
        rows += [c for c in cells if c["task"] == task_name]
    text = (
        f"gmm-mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per image, "
        f"1 thread (`python benchmarks/gmm_tasks.py`); exact-mmse: the exact posterior mean\n\n" + markdown(rows, baseline="dps")
    )
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
