"""Train the conditional score estimators: the shipped adapters, the references of the
diagnostics and the training-set-size ablation (each a `dmap train-cse` call).

    python benchmarks/cse_train.py [--only shipped|reference|ablation]

shipped    src/dmap/assets/cse/mnist-<task>.safetensors: 100 train digits, five paper tasks
reference  src/dmap/assets/cse/reference/mnist-<task>.safetensors: all 9,001 train digits,
           3,000 steps (sr4, inpaint-box): the "well-trained conditional model" against
           which `dmap analyze --prior mnist` measures score errors
noiseless  src/dmap/assets/cse/mnist-<task>-sigma0.safetensors: as shipped, trained at sigma_y = 0
           (the paper's noiseless measurements; an adapter serves only its noise level)
ablation   runs/cse-ablation/mnist-sr4-<n>.safetensors: 10 and 1,000 digits (100 is the
           shipped one), for `benchmarks/cse.py`

One thread each; an adapter already written is skipped, an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from common import PAPER_TASKS, ROOT

ASSETS = ROOT / "src" / "dmap" / "assets" / "cse"
SIGMA = 0.05
# the input of each: A^+ y (pinv, the first adapters) or the regularized back-projection
# (deblur-aniso at sigma_y = 0.05, where |A^+ y| reached 2e4 and broke the first adapter)
COND = {t: "regularized" if t == "deblur-aniso" else "pinv" for t in PAPER_TASKS}
JOBS = {
    "shipped": [(t, 100, 1500, SIGMA, COND[t], ASSETS / f"mnist-{t}.safetensors") for t in PAPER_TASKS],
    "noiseless": [(t, 100, 1500, 0.0, "pinv", ASSETS / f"mnist-{t}-sigma0.safetensors") for t in PAPER_TASKS],
    "reference": [(t, 9001, 3000, SIGMA, "pinv", ASSETS / "reference" / f"mnist-{t}.safetensors") for t in ("sr4", "inpaint-box")],
    "ablation": [
        ("sr4", n, 1500, SIGMA, "pinv", ROOT / "runs" / "cse-ablation" / f"mnist-sr4-{n}.safetensors") for n in (10, 1000)
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=list(JOBS))
    args = ap.parse_args()
    for group, jobs in JOBS.items():
        if args.only and group != args.only:
            continue
        for task, images, steps, sigma_y, cond, out in jobs:
            if out.exists():
                print(f"{out} exists, skipped", flush=True)
                continue
            cmd = [
                "dmap",
                "train-cse",
                "--prior",
                "mnist",
                "--task",
                task,
                "--images",
                str(images),
                "--steps",
                str(steps),
                "--sigma-y",
                str(sigma_y),
                "--condition",
                cond,
                "--out",
                str(out),
            ]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


if __name__ == "__main__":
    sys.exit(main())
