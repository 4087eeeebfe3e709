"""The task x method grid shared by the benchmark scripts (resumable JSONL store)."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

import dmap
from dmap.data import mnist_spread
from dmap.metrics import psnr, ssim
from dmap.rng import seeded
from dmap.solvers import METHODS, resolve_options

ROOT = Path(__file__).resolve().parent.parent
PAPER_TASKS = ["inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2"]
Reference = Callable[[dmap.operators.Task, torch.Tensor], torch.Tensor]


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0)


def run_grid(prior_name: str, methods: list[str], images: int, nfe: int, store: Path,
             tasks: list[str] = PAPER_TASKS, references: dict[str, Reference] | None = None) -> list[dict]:
    """Run every (task, method) cell not yet in ``store`` and return all rows of this
    configuration.  Masks/kernels come from seed 0, the noise of test image i from
    ``seeded(1, i)``, the sampler from ``seeded(2, i)``; each method's preset has its
    steps set to spend at most ``nfe`` evaluations.  ``references`` are extra
    estimators (name -> function of (task, y)) reported as cells without a budget."""
    prior = dmap.load_prior(prior_name)
    x, ids = mnist_spread(images)
    store.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    rows = [r for r in rows if r["images"] == images and r["budget"] == nfe and r["prior"] == prior_name]
    done = {(r["task"], r["method"]) for r in rows}
    for name in tasks:
        task = dmap.make_task(name, prior.shape, generator=seeded(0))
        y = task.simulate(x, generator=[seeded(1, int(i)) for i in ids])
        estimates: dict[str, torch.Tensor] = {}  # each reference computed once per task

        def reference(ref: str) -> torch.Tensor:
            if ref not in estimates:
                estimates[ref] = references[ref](task, y)
            return estimates[ref]

        for method in list(references or {}) + methods:
            if (name, method) in done:
                continue
            if method in (references or {}):
                out, opts, cost, seconds = reference(method), {}, 0, float("nan")
            else:
                opts = resolve_options(method, prior.name, name)
                opts["steps"] = METHODS[method].steps_for(nfe, opts)
                cost = METHODS[method].nfe(opts)
                start = time.perf_counter()
                out = dmap.solve(method, prior, task, y, generator=[seeded(2, int(i)) for i in ids], **opts)
                seconds = (time.perf_counter() - start) / len(x)
            p = psnr(out, x)
            row = {"task": name, "method": method, "prior": prior_name, "images": images, "budget": nfe,
                   "nfe": cost, "options": opts, "sigma_y": task.sigma_y, "psnr_per_image": p.tolist(),
                   "ssim": float(ssim(out, x).mean()), "seconds_per_image": seconds, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "machine": platform.machine()}
            row["psnr"], row["psnr_se"] = mean_se(p)
            for ref in references or {}:
                if method != ref:
                    row[f"psnr_vs_{ref}"], row[f"psnr_vs_{ref}_se"] = mean_se(psnr(out, reference(ref)))
            with store.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{name:15s} {method:10s} PSNR {row['psnr']:6.2f} +- {row['psnr_se']:.2f}  SSIM {row['ssim']:.3f}  "
                  f"{seconds:.3f} s/img", flush=True)
    return rows


def table(rows: list[dict], tasks: list[str] = PAPER_TASKS, baseline: str = "dps", extra: str | None = None) -> str:
    """Markdown table: PSNR mean +- standard error, the paired difference to ``baseline``
    (mean +- standard error of the per-image differences), SSIM, seconds per image."""
    head = "| task | method | NFE | PSNR (dB) | Δ vs " + baseline + " (paired) |"
    head += f" PSNR vs {extra} (dB) |" * bool(extra) + " SSIM | s / image |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in tasks:
        cells = [r for r in rows if r["task"] == name]
        base = next((r for r in cells if r["method"] == baseline), None)
        for r in cells:
            if base is None or r["method"] == baseline:
                delta = "-"
            else:
                d, d_se = mean_se(torch.tensor(r["psnr_per_image"]) - torch.tensor(base["psnr_per_image"]))
                delta = f"{d:+.2f} ± {d_se:.2f}"
            line = f"| {name} | {r['method']} | {r['nfe']} | {r['psnr']:.2f} ± {r['psnr_se']:.2f} | {delta} |"
            if extra:
                key = f"psnr_vs_{extra}"
                line += f" {r[key]:.2f} ± {r[key + '_se']:.2f} |" if key in r else " - |"
            sec = r["seconds_per_image"]
            line += f" {r['ssim']:.3f} | {'-' if math.isnan(sec) else f'{sec:.3f}'} |"
            lines.append(line)
    return "\n".join(lines) + "\n"
