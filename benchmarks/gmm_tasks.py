"""DPS vs DSG vs DMAP on the exact Gaussian-mixture prior at an equal budget.

    python benchmarks/gmm_tasks.py [--images 32] [--nfe 1000]

Five paper tasks, 32 test digits (evenly spaced over the test split), each method with
its shipped preset and its steps set to spend at most ``--nfe`` network evaluations per
image.  Per cell: PSNR against the truth (mean +- standard error, and the paired
difference to DPS), PSNR against the exact posterior mean (the MMSE estimate, closed
form for the mixture; also reported as the row ``exact-mmse``), SSIM, seconds per
image.  Cells go to ``benchmarks/results/gmm_tasks.jsonl`` as they finish (a rerun skips
them); the table to ``benchmarks/results/gmm_tasks.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import dmap
from common import ROOT, run_grid, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    ap.add_argument("--methods", default="dps,dsg,dmap")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gmm_tasks"))
    args = ap.parse_args()
    mixture = dmap.load_prior("gmm-mnist").mixture

    def exact_mmse(task, y: torch.Tensor) -> torch.Tensor:
        post = mixture.condition(task.operator.matrix(), task.sigma_y)
        return post.mean(y.reshape(len(y), -1).double()).float().reshape(len(y), *task.operator.x_shape)

    rows = run_grid("gmm-mnist", args.methods.split(","), args.images, args.nfe, Path(args.out + ".jsonl"),
                    references={"exact-mmse": exact_mmse})
    text = (f"gmm-mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per "
            f"image, {rows[0]['threads']} thread(s) (`python benchmarks/gmm_tasks.py`)\n\n")
    text += table(rows, extra="exact-mmse")
    Path(args.out + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
