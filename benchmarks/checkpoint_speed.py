"""Speed and memory of a full-size published checkpoint's network (random weights: speed
does not need trained ones) and of DPS and DMAP on it.

    python benchmarks/checkpoint_speed.py [--config adm-ffhq256] [--device cpu|cuda]
        [--batches 1,4] [--dtypes float32,bfloat16] [--steps 2] [--threads N]

For each (dtype, batch): seconds per forward and per forward+backward (the gradient with
respect to the input that every guided step needs), and seconds per DPS step and per
DMAP step (K = 3: one forward and three forward+backward passes), each the median of
``--reps`` timings after a warm-up.  Seconds per image for 1000 steps are extrapolated
from the measured steps (1000 x step time / batch; DMAP at equal steps, as the paper
compares them) — on a CPU only a few steps fit, and the table says so.  Memory: on CUDA
the peak allocated per configuration; on a CPU the process's peak resident set size,
which only grows, so configurations run in increasing batch order.  Results go to
``benchmarks/results/checkpoint_speed_<config>_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from common import RESULTS, peak_mb, timed
from dmap.api import run_method
from dmap.operators import make_task
from dmap.presets import resolve_options
from dmap.priors.adm import ADM_CONFIGS, ADMUNet
from dmap.priors.network import NetworkPrior, parse_dtype
from dmap.rng import sample_generators, seeded
from dmap.utils import seeded_init


class _Stop(Exception):
    pass


def build_prior(config: str, device: torch.device, dtype: torch.dtype) -> NetworkPrior:
    """The full-size network with random weights, read as an x0 predictor whose output layer
    is zero (so that DPS and DMAP stay in range on random weights; the cost is the same)."""
    cfg = ADM_CONFIGS[config].replace(predict_xstart=True)
    net = seeded_init(0, lambda: ADMUNet(cfg))
    torch.nn.init.zeros_(net.out[2].weight)
    torch.nn.init.zeros_(net.out[2].bias)
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    return NetworkPrior(net.eval().to(device), cfg.schedule(), shape, config, "sample", dtype)


def step_seconds(method: str, prior, task, y, steps: int, reps: int, device) -> float:
    """Seconds per step of ``method`` at 1000 steps: ``steps`` steps of the full run, timed."""
    opts = resolve_options(method, prior.name, task.name, steps=1000, step_size=0.1)
    if method == "dmap":
        opts = opts.replace(inner_steps=3)

    def run() -> None:
        def stop(info: dict) -> None:
            if info["step"] + 1 == steps:
                raise _Stop

        try:
            run_method(method, prior, task, y, opts, generator=sample_generators(2, len(y)), callback=stop)
        except _Stop:
            pass

    return timed(run, reps, device) / steps


def measure(prior, batch: int, steps: int, reps: int, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x = torch.randn(batch, *prior.shape, generator=seeded(batch)).to(device)
    t = torch.full((batch,), 500, device=device)

    def forward() -> None:
        with torch.no_grad():
            prior.eps(x, t)

    def forward_backward() -> None:
        xx = x.detach().requires_grad_(True)
        torch.autograd.grad(prior.eps(xx, t).sum(), xx)

    task = make_task("inpaint-box", prior.shape, generator=seeded(0))
    task.operator.to(device)
    y = task.simulate(x.clamp(-1, 1), generator=sample_generators(1, batch))
    row = {"batch": batch, "forward_s": timed(forward, reps, device), "forward_backward_s": timed(forward_backward, reps, device)}
    for method in ("dps", "dmap"):
        s = step_seconds(method, prior, task, y, steps, reps, device)
        row[f"{method}_step_s"] = s
        row[f"{method}_s_per_image_1000_steps"] = 1000 * s / batch
    row["peak_mb"] = peak_mb(device)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="adm-ffhq256", choices=list(ADM_CONFIGS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--steps", type=int, default=2, help="steps timed per DPS / DMAP run (2)")
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions after the warm-up (1)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {
        "config": args.config,
        "device": str(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "steps_timed": args.steps,
        "reps": args.reps,
        "rows": [],
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    for dtype in args.dtypes.split(","):
        prior = build_prior(args.config, device, parse_dtype(dtype))
        for batch in (int(b) for b in args.batches.split(",")):
            row = {"dtype": dtype, **measure(prior, batch, args.steps, args.reps, device)}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    name = f"checkpoint_speed_{args.config}_{device.type}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"`python benchmarks/checkpoint_speed.py {' '.join(sys.argv[1:])}` ({result.get('gpu', 'CPU')}, {args.threads} "
        f"thread(s), torch {torch.__version__}; {args.steps} step(s) of DPS / DMAP timed, 1000 extrapolated)",
        "",
        "| dtype | batch | forward (s) | forward+backward (s) | DPS s / step | DMAP (K=3) s / step | "
        "DPS s / image, 1000 steps | DMAP s / image, 1000 steps | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['dtype']} | {r['batch']} | {r['forward_s']:.3f} | {r['forward_backward_s']:.3f} | {r['dps_step_s']:.3f} | "
        f"{r['dmap_step_s']:.3f} | {r['dps_s_per_image_1000_steps']:.0f} | {r['dmap_s_per_image_1000_steps']:.0f} | "
        f"{r['peak_mb']:.0f} |"
        for r in result["rows"]
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
