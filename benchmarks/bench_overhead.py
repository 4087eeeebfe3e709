"""What `dmap bench` adds to the solvers' own time.

    python benchmarks/bench_overhead.py [--images 16] [--nfe 500] [--repeats 2]

In one process, alternately: (a) the solver alone on the benchmark's batches (the same
calls `dmap bench` makes, timed around each call), and (b) a whole `dmap bench` run into a
fresh folder (loading the prior, manifest, measurements, metrics, the synced store, the
merge and the report with its plots and grids).  Overhead = (b) / (a) - 1, per repeat;
target at most 5 %.  Writes ``benchmarks/results/bench_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import RESULTS
from dmap.bench import Bench, BenchConfig, run_bench, units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--nfe", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = BenchConfig("mnist", ("sr4",), ("dps",), images=args.images, nfe=(args.nfe,))
    results = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(config, Path(tmp) / "direct")
            solver = sum(bench.solve(u)[1] for u in units(config))
            start = time.perf_counter()
            run_bench(config, Path(tmp) / "bench", threads=1, show_progress=False)
            whole = time.perf_counter() - start
        results.append({"repeat": r, "solver_s": solver, "bench_s": whole, "overhead": whole / solver - 1})
        print(f"repeat {r}: solver alone {solver:.1f} s, dmap bench {whole:.1f} s, overhead {whole / solver - 1:+.1%}",
              flush=True)
    out = {"config": {"prior": "mnist", "task": "sr4", "method": "dps", "images": args.images, "nfe": args.nfe,
                      "threads": 1}, "repeats": results}
    (RESULTS / "bench_overhead.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
