"""Tune the shipped presets on *train* digits and write ``src/dmap/presets.json``.

    python benchmarks/tune_presets.py [--prior gmm-mnist] [--images 16] [--nfe 1000] [--around PRIOR]

For every task and method: a coarse-to-fine search of the step size (and K for DMAP)
at an equal budget of ``--nfe`` network evaluations per image, maximizing mean PSNR on
``--images`` train digits.  Every trial is appended to
``benchmarks/results/tune_<prior>.jsonl``; a rerun skips the (task, method) pairs done.
``--around gmm-mnist`` searches locally around that prior's presets (a cheaper search
for an expensive network; see ``dmap.tune.tune``).
"""

from __future__ import annotations

import argparse
import sys
import json
import time
from pathlib import Path

import torch

import dmap
from dmap.data import mnist
from dmap.rng import sample_generators, seeded
from dmap.tune import tune

ROOT = Path(__file__).resolve().parent.parent
TASK_SEED = 0  # masks, kernels and permutations: the same seed as the benchmarks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="gmm-mnist")
    ap.add_argument("--tasks", default=",".join(dmap.TASKS))
    ap.add_argument("--methods", default="dps,dsg,dmap")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--nfe", type=int, default=1000)
    ap.add_argument("--around", help="local search around this prior's presets (e.g. gmm-mnist), K kept")
    args = ap.parse_args()
    torch.set_num_threads(1)

    prior = dmap.load_prior(args.prior)
    train, _ = mnist("train")
    pick = torch.randperm(len(train), generator=seeded(1234))[: args.images]
    x = train[pick]
    log_path = ROOT / "benchmarks" / "results" / f"tune_{args.prior}.jsonl"
    done = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            row = json.loads(line)
            if row.get("chosen"):
                done[(row["task"], row["method"])] = row["options"]
    for task_name in args.tasks.split(","):
        task = dmap.make_task(task_name, prior.shape, generator=seeded(TASK_SEED))
        y = task.simulate(x, generator=sample_generators(TASK_SEED + 1, len(x)))
        for method in args.methods.split(","):
            if (task_name, method) in done:
                continue
            start = time.perf_counter()
            with log_path.open("a") as f:
                def log(trial):
                    f.write(json.dumps({"task": task_name, "method": method, **trial}) + "\n")
                    f.flush()
                    print(task_name, method, trial, flush=True)
                around = None
                if args.around:
                    around = dmap.solvers.resolve_options(method, args.around, task_name)
                chosen, trials = tune(prior, task, method, x, y, nfe=args.nfe, around=around, log=log)
                f.write(json.dumps({"task": task_name, "method": method, "chosen": True, "options": chosen,
                                    "images": args.images, "seconds": time.perf_counter() - start}) + "\n")
            done[(task_name, method)] = chosen
    presets_path = ROOT / "src" / "dmap" / "presets.json"
    presets = json.loads(presets_path.read_text())
    table = presets["presets"].setdefault(args.prior, {})
    for (task_name, method), options in done.items():
        table.setdefault(task_name, {})[method] = options
    presets.setdefault("notes", {})[args.prior] = (
        f"produced by `python benchmarks/tune_presets.py {' '.join(sys.argv[1:])}`: step sizes searched on "
        f"{args.images} train digits at {args.nfe} network evaluations per image "
        f"(trials in benchmarks/results/tune_{args.prior}.jsonl)")
    presets_path.write_text(json.dumps(presets, indent=1, sort_keys=True) + "\n")
    print("wrote", presets_path)


if __name__ == "__main__":
    main()
