"""How many torch threads ``dmap.solve`` should use by default: the README's API snippet
(``mnist`` prior, sr4, DMAP at 100 evaluations, 4 test digits) timed at 1 thread and at
torch's default, on an idle machine and beside a process that keeps one core busy (a
shared machine), the settings alternated in one run.

    python benchmarks/api_threads.py [--repeats 3]

Writes ``benchmarks/results/api_threads.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch

import dmap
from common import ROOT
from dmap.data import mnist
from dmap.rng import sample_generators, seeded


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def snippet_seconds(prior, threads: int | None) -> float:
    x = mnist("test")[0][:4]
    task = dmap.make_task("sr4", prior.image_shape, sigma_y=0.05, generator=seeded(0))
    y = task.simulate(x, generator=sample_generators(1, 4))
    t0 = time.perf_counter()
    dmap.solve("dmap", prior, task, y, generator=sample_generators(2, 4), nfe=100, threads=threads)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    prior = dmap.load_prior("mnist")
    default = torch.get_num_threads()
    settings = {"1 thread": 1, f"torch's default ({default} threads)": None}
    rows = []
    for load in ("idle", "one core busy"):
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,)) if load != "idle" else None
        if spinner:
            spinner.start()
        times = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, n in settings.items():
                times[name].append(snippet_seconds(prior, n))
        if spinner:
            stop.set()
            spinner.join()
        rows += [(load, name, statistics.median(ts)) for name, ts in times.items()]
        print(rows[-2:], flush=True)
    lines = [
        f"# dmap.solve threads: the README API snippet (mnist, sr4, DMAP, 100 NFE, 4 digits), median of {args.repeats}",
        "",
        f"Measured with `python benchmarks/api_threads.py --repeats {args.repeats}` ({torch.get_num_threads()}-thread torch "
        f"default, {multiprocessing.cpu_count()} CPUs).",
        "",
        "| machine | threads | seconds | vs 1 thread |",
        "|---|---|---|---|",
    ]
    one = {load: s for load, name, s in rows if name == "1 thread"}
    lines += [f"| {load} | {name} | {s:.1f} | {s / one[load]:.2f}x |" for load, name, s in rows]
    (ROOT / "benchmarks" / "results" / "api_threads.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
