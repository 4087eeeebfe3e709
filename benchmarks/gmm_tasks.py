"""DPS vs DSG vs DMAP on the exact Gaussian-mixture prior at an equal budget, with the
exact posterior mean (the MMSE estimate, closed form for the mixture) as an oracle row.

    python benchmarks/gmm_tasks.py [--images 32] [--nfe 1000]

A `dmap bench` call into ``benchmarks/results/gmm_tasks/`` (resumable) plus the rows
``exact-mmse`` computed on the same images and measurements; the table goes to
``benchmarks/results/gmm_tasks/table.md``.
"""

from __future__ import annotations

import argparse

from common import PAPER_TASKS, RESULTS, bench, exact_mmse_rows
from dmap.bench import markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=1000)
    args = ap.parse_args()
    out = RESULTS / "gmm_tasks"
    cells = bench("gmm-mnist", PAPER_TASKS, ["dps", "dsg", "dmap"], out, images=args.images, nfe=args.nfe)
    mmse = exact_mmse_rows(out, args.nfe)
    rows = [r for m in mmse for r in [m, *(c for c in cells if c["task"] == m["task"])]]
    text = (
        f"gmm-mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per image, "
        f"1 thread (`python benchmarks/gmm_tasks.py`); exact-mmse: the exact posterior mean\n\n" + markdown(rows, baseline="dps")
    )
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
