"""Speed of a prior's network and the solvers' overhead, measured side by side.

    python benchmarks/prior_speed.py [--prior mnist] [--steps 50]

- forward and forward+backward (gradient with respect to the input, as the solvers
  need) seconds per image at batch 1, 16 and 64;
- solver overhead = DPS wall time / (network evaluations x forward+backward time at
  the same batch), at batch 16, the two timed alternately in one run (target <= 1.10);
- peak resident memory of a process that loads the prior and runs DPS at batch 16
  (target < 1.5 GB), next to one that only loads the prior.
Writes ``benchmarks/results/prior_speed_<prior>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import dmap
from common import ROOT
from dmap.rng import sample_generators, seeded

PEAK = """
import resource, sys, torch, dmap
from dmap.rng import sample_generators, seeded
prior = dmap.load_prior(sys.argv[1])
if sys.argv[2] == "dps":
    task = dmap.make_task("sr4", prior.shape, generator=seeded(0))
    y = task.simulate(torch.zeros(16, *prior.shape), generator=sample_generators(1, 16))
    dmap.solve("dps", prior, task, y, steps=int(sys.argv[3]), generator=sample_generators(2, 16))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def timed(fn, min_seconds: float = 1.0) -> float:
    """Median seconds of ``fn()`` over repeats filling about ``min_seconds``."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    times = []
    for _ in range(max(3, int(min_seconds / once))):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--steps", type=int, default=50, help="DPS steps for the overhead and memory runs (50)")
    args = ap.parse_args()
    prior = dmap.load_prior(args.prior)
    result = {"prior": args.prior, "threads": torch.get_num_threads(), "torch": torch.__version__, "batches": {}}

    def forward_backward(x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(prior.eps(x, 500).sum(), x)
        return g

    for b in (1, 16, 64):
        x = torch.randn(b, *prior.shape, generator=seeded(b))
        with torch.no_grad():
            fwd = timed(lambda x=x: prior.eps(x, 500))
        fb = timed(lambda x=x: forward_backward(x))
        result["batches"][b] = {"forward_s_per_image": fwd / b, "forward_backward_s_per_image": fb / b}
        print(b, result["batches"][b], flush=True)

    task = dmap.make_task("sr4", prior.shape, generator=seeded(0))
    x = torch.randn(16, *prior.shape, generator=seeded(16))
    y = task.simulate(torch.zeros(16, *prior.shape), generator=sample_generators(1, 16))
    fbs, dps = [], []
    for _ in range(3):  # alternate, so both see the same machine load
        fbs.append(timed(lambda: forward_backward(x), 0.5))
        start = time.perf_counter()
        dmap.solve("dps", prior, task, y, steps=args.steps, generator=sample_generators(2, 16))
        dps.append(time.perf_counter() - start)
    fb16, dps_s = sorted(fbs)[1], sorted(dps)[1]
    result["overhead"] = {
        "steps": args.steps,
        "dps_seconds": dps_s,
        "forward_backward_seconds_batch16": fb16,
        "ratio": dps_s / (args.steps * fb16),
    }
    print(result["overhead"], flush=True)

    def peak(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", PEAK, args.prior, mode, str(args.steps)], capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])

    result["peak_rss_mb"] = {"prior_loaded": peak("load"), "dps_batch16": peak("dps")}
    print(result["peak_rss_mb"], flush=True)
    out = ROOT / "benchmarks" / "results" / f"prior_speed_{args.prior}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [
        f"prior `{args.prior}`, {result['threads']} thread(s), torch {torch.__version__} "
        f"(`python benchmarks/prior_speed.py --prior {args.prior}`)",
        "",
        "| batch | forward (ms / image) | forward+backward (ms / image) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {b} | {1e3 * r['forward_s_per_image']:.2f} | {1e3 * r['forward_backward_s_per_image']:.2f} |"
        for b, r in result["batches"].items()
    ]
    o = result["overhead"]
    lines += [
        "",
        f"DPS overhead at batch 16: {o['ratio']:.3f} (DPS {o['dps_seconds']:.2f} s for {o['steps']} steps; "
        f"forward+backward {1e3 * o['forward_backward_seconds_batch16']:.1f} ms per batch)",
        f"Peak resident memory: {result['peak_rss_mb']['dps_batch16']:.0f} MB running DPS at batch 16 "
        f"({result['peak_rss_mb']['prior_loaded']:.0f} MB with the prior loaded only)",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
