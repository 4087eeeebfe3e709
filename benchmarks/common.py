"""What the benchmark scripts share: paths, the paper's tasks and the `dmap bench` call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAPER_TASKS = list(__import__("dmap.catalogue").catalogue.PAPER_TASKS)


def dmap_cli(*args: str) -> None:
    """Run ``dmap ARGS...`` from the repository root, the command printed first."""
    cmd = ["dmap", *args]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def bench(
    prior: str,
    tasks: list[str],
    methods: list[str],
    out: Path,
    *,
    images: int = 32,
    nfe: int | str = 1000,
    protocol: str | None = None,
    sigma_y: float | None = None,
    threads: int | None = 1,
    workers: int = 1,
    presets: Path | None = None,
) -> list[dict]:
    """Run (or finish) ``dmap bench`` into ``out`` and return its summary cells: the one place
    the benchmark scripts build a bench command.  ``nfe``: one budget or several ("20,100"),
    evaluations per image, or steps under ``protocol="equal-steps"``; flags left None are
    not passed (the bench's defaults).  ``--refresh``: cells whose settings changed are
    solved again."""
    flag = "--steps" if protocol == "equal-steps" else "--nfe"
    optional = {"--protocol": protocol, "--sigma-y": sigma_y, "--threads": threads, "--presets": presets}
    args = ["--prior", prior, "--tasks", ",".join(tasks), "--methods", ",".join(methods), "--images", str(images)]
    args += [flag, str(nfe)] + [a for k, v in optional.items() if v is not None for a in (k, str(v))]
    dmap_cli("bench", *args, "--workers", str(workers), "--out", str(out), "--refresh")
    return json.loads((out / "summary.json").read_text())


def exact_mmse_rows(out: Path, budget: int) -> list[dict]:
    """Summary rows ``exact-mmse`` of the mixture benchmark in ``out``: the exact posterior
    mean (closed form for the Gaussian mixture) on the same images and measurements."""
    import numpy as np

    from dmap.bench import Bench
    from dmap.metrics import psnr, ssim

    b = Bench.open(out)
    rows = []
    for task_name in b.config.tasks:
        task, y = b.task(task_name)
        post = b.prior.mixture.condition(task.operator.matrix(), task.sigma_y)
        mmse = post.mean(y.reshape(len(y), -1).double()).float().reshape(b.x.shape)
        p = psnr(mmse, b.x).numpy()
        rows.append(
            {
                "task": task_name,
                "method": "exact-mmse",
                "prior": b.config.prior,
                "n_images": len(p),
                "nfe_budget": budget,
                "steps": 0,
                "nfe": 0,
                "psnr_mean": float(p.mean()),
                "psnr_se": float(p.std(ddof=1) / np.sqrt(len(p))),
                "ssim_mean": float(ssim(mmse, b.x).mean()),
                "seconds_per_image": float("nan"),
                "peak_mem_mb": float("nan"),
                "psnr_per_image": p.tolist(),
            }
        )
    return rows


def timed(fn, reps: int, device) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up run (CUDA synchronized)."""
    import statistics
    import time

    import torch

    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mb(device) -> float:
    """Peak memory in MB: CUDA's peak allocated, or the process's peak resident set size."""
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
