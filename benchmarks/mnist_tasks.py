"""DPS vs DSG vs DMAP on the shipped neural prior `mnist` at an equal budget.

    python benchmarks/mnist_tasks.py [--images 32] [--nfe 1000]

Same protocol as ``gmm_tasks.py`` (five paper tasks, test digits evenly spaced over the
test split, presets tuned on train digits, steps set to spend at most ``--nfe`` network
evaluations per image): PSNR (mean +- standard error, paired difference to DPS), SSIM,
seconds per image.  Resumable store ``benchmarks/results/mnist_tasks.jsonl``, table
``benchmarks/results/mnist_tasks.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, run_grid, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    ap.add_argument("--methods", default="dps,dsg,dmap")
    ap.add_argument("--tasks", default="inpaint-box,inpaint-random,deblur-aniso,sr4,cs2")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mnist_tasks"))
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    rows = run_grid("mnist", args.methods.split(","), args.images, args.nfe, Path(args.out + ".jsonl"), tasks=tasks)
    text = (f"mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per image, "
            f"{rows[0]['threads']} thread(s) (`python benchmarks/mnist_tasks.py`)\n\n")
    text += table(rows, tasks=tasks)
    Path(args.out + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
