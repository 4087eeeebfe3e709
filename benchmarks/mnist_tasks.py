"""DPS vs DSG vs DMAP on the shipped neural prior `mnist` at an equal budget.

    python benchmarks/mnist_tasks.py [--images 32] [--nfe 1000] [--workers 1]

A thin call of `dmap bench` (five paper tasks, test digits evenly spaced over the test
split, presets tuned on train digits, steps set to spend at most ``--nfe`` network
evaluations per image) into ``benchmarks/results/mnist_tasks/`` (resumable; manifest,
store, report, plots and image grids there); the table is its ``summary.md``.
"""

from __future__ import annotations

import argparse

from common import PAPER_TASKS, RESULTS, bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    bench(
        "mnist",
        PAPER_TASKS,
        ["dps", "dsg", "dmap"],
        RESULTS / "mnist_tasks",
        images=args.images,
        nfe=args.nfe,
        workers=args.workers,
    )
    print((RESULTS / "mnist_tasks" / "summary.md").read_text())


if __name__ == "__main__":
    main()
