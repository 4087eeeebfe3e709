"""DPS vs DSG vs DMAP on the exact Gaussian-mixture prior at an equal budget.

    python benchmarks/gmm_tasks.py [--images 32] [--nfe 1000]

For the five paper tasks and 32 test digits (fixed, evenly spaced over the test split;
masks/kernels from seed 0, noise and sampler seeds per image), each method runs with
its shipped preset, its steps set so that it spends at most ``--nfe`` network
evaluations per image.  Reported per cell: PSNR against the truth and against the
exact posterior mean (the MMSE estimate, which the mixture gives in closed form),
mean +- standard error, SSIM, seconds per image.  Cells are appended to
``benchmarks/results/gmm_tasks.jsonl`` as they finish (a rerun skips them); the table
goes to ``benchmarks/results/gmm_tasks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import dmap
from dmap.data import mnist
from dmap.metrics import psnr, ssim
from dmap.rng import seeded
from dmap.solvers import METHODS, resolve_options

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2"]


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    ap.add_argument("--methods", default="dps,dsg,dmap")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gmm_tasks"))
    args = ap.parse_args()

    prior = dmap.load_prior("gmm-mnist")
    test, _ = mnist("test")
    ids = torch.linspace(0, len(test) - 1, args.images).round().long()
    x = test[ids]
    store = Path(args.out + ".jsonl")
    store.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    done = {(r["task"], r["method"]) for r in rows if r["images"] == args.images and r["budget"] == args.nfe}
    for name in TASKS:
        task = dmap.make_task(name, prior.shape, generator=seeded(0))
        y = task.simulate(x, generator=[seeded(1, int(i)) for i in ids])
        post = prior.mixture.condition(task.operator.matrix(), task.sigma_y)
        mmse = post.mean(y.reshape(len(y), -1).double()).float().reshape(x.shape)
        cells = [("exact-mmse", None)] + [(m, None) for m in args.methods.split(",")]
        for method, _ in cells:
            if (name, method) in done:
                continue
            if method == "exact-mmse":
                out, opts, nfe, seconds = mmse, {}, 0, float("nan")
            else:
                opts = resolve_options(method, prior.name, name)
                opts["steps"] = METHODS[method].steps_for(args.nfe, opts)
                nfe = METHODS[method].nfe(opts)
                start = time.perf_counter()
                out = dmap.solve(method, prior, task, y, generator=[seeded(2, int(i)) for i in ids], **opts)
                seconds = (time.perf_counter() - start) / len(x)
            p, p_se = mean_se(psnr(out, x))
            pm, pm_se = mean_se(psnr(out, mmse))
            row = {"task": name, "method": method, "prior": prior.name, "images": args.images, "budget": args.nfe,
                   "nfe": nfe, "options": opts, "sigma_y": task.sigma_y, "psnr": p, "psnr_se": p_se,
                   "psnr_vs_mmse": pm, "psnr_vs_mmse_se": pm_se, "ssim": float(ssim(out, x).mean()),
                   "seconds_per_image": seconds, "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
            with store.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{name:15s} {method:10s} PSNR {p:6.2f} +- {p_se:.2f}  vs MMSE {pm:6.2f}  "
                  f"SSIM {row['ssim']:.3f}  {seconds:.3f} s/img", flush=True)
    write_table(rows, args, Path(args.out + ".md"))


def write_table(rows: list[dict], args, path: Path) -> None:
    rows = [r for r in rows if r["images"] == args.images and r["budget"] == args.nfe]
    lines = [f"gmm-mnist, {args.images} test digits, sigma_y = 0.05, budget {args.nfe} network evaluations per image "
             f"(`python benchmarks/gmm_tasks.py`)", "",
             "| task | method | NFE | PSNR (dB) | PSNR vs exact MMSE (dB) | SSIM | s / image |",
             "|---|---|---|---|---|---|---|"]
    for name in TASKS:
        for r in [r for r in rows if r["task"] == name]:
            sec = "-" if math.isnan(r["seconds_per_image"]) else f"{r['seconds_per_image']:.3f}"
            vs = "-" if r["method"] == "exact-mmse" else f"{r['psnr_vs_mmse']:.2f} ± {r['psnr_vs_mmse_se']:.2f}"
            lines.append(f"| {name} | {r['method']} | {r['nfe']} | {r['psnr']:.2f} ± {r['psnr_se']:.2f} | {vs} | "
                         f"{r['ssim']:.3f} | {sec} |")
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    main()
