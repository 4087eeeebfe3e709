"""Every method at every budget: PSNR against network evaluations and against seconds.

    python benchmarks/budgets.py --prior mnist [--images 64] [--nfe 20,50,100,250,1000]
        [--methods dps,dsg,dmap,ddrm,diffpir,pigdm,daps,reddiff] [--workers 1]
    python benchmarks/budgets.py --prior mnist --report      # table and figure of what exists

A `dmap bench` call (equal evaluations, sigma_y = 0.05, the five paper tasks, the shipped
presets at each budget, ``--images`` test digits) into
``benchmarks/results/budgets/<prior>/<task>/<method>/`` (resumable; each method on the tasks
and budgets its preset takes: DDRM needs an SVD, which deblur-aniso lacks; DiffPIR's
quadratic time spacing stops at 500 steps), then:

- ``<prior>.md``: every cell (PSNR ± SE, paired difference to DPS, seconds per image),
  and on ``gmm-mnist`` the exact posterior mean (``exact-mmse``): the least-squares optimum
  for samples of the mixture; the test digits are not, so a method can beat it;
- ``<prior>-best.md``: the best method at each budget and task, with its paired margin
  over the runner-up (a margin within two standard errors is a tie, marked ``≈``);
- ``<prior>-monotone.md``: per method and task, the largest fall of PSNR from a smaller
  budget to a larger one (paired per image, ± its standard error; ``✓`` where it is within
  one standard error — the presets cap a budget where a smaller one did better on train
  digits, docs/presets.md);
- ``<prior>.png``: PSNR against evaluations (top) and against seconds per image (bottom),
  one column per task.

Seconds are wall time per image on one thread with the machine shared, so compare them
within one run (ratios), not across machines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import dmap
from common import PAPER_TASKS, RESULTS, bench, exact_mmse_rows
from dmap.api import unsuited
from dmap.bench import markdown
from dmap.presets import resolve_options

METHODS = "dps,dsg,dmap,ddrm,diffpir,pigdm,daps,reddiff"


def takes(prior, task: str, method: str, budgets: list[int]) -> list[int]:
    """The budgets at which ``method``'s preset can solve ``task`` (none for DDRM on
    deblur-aniso, which has no SVD; DiffPIR's quadratic spacing stops at 500 steps)."""
    t = dmap.make_task(task, prior.image_shape)
    return [n for n in budgets if not unsuited(method, t, resolve_options(method, prior.name, task, nfe=n), prior)]


def best_table(cells: list[dict]) -> str:
    """Rows: budgets; columns: tasks; each entry the best method, its PSNR and its paired
    margin over the second best (``≈`` when under two standard errors); a method that
    diverged on any image is out of the ranking."""
    budgets = sorted({c["nfe_budget"] for c in cells})
    tasks = [t for t in PAPER_TASKS if any(c["task"] == t for c in cells)]
    lines = ["| NFE | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for n in budgets:
        row = []
        for task in tasks:
            mine = [c for c in cells if (c["task"], c["nfe_budget"]) == (task, n) and not c.get("diverged")]
            ranked = sorted(mine, key=lambda c: -c["psnr_mean"])
            if len(ranked) < 2:
                row.append(" ".join(f"{c['method']} {c['psnr_mean']:.2f}" for c in ranked) or "-")
                continue
            first, second = ranked[0], ranked[1]
            d = np.subtract(first["psnr_per_image"], second["psnr_per_image"])
            margin, se = d.mean(), d.std(ddof=1) / np.sqrt(len(d))
            tie = "≈ " if margin < 2 * se else ""
            row.append(f"{tie}{first['method']} {first['psnr_mean']:.2f} (+{margin:.2f} ± {se:.2f} vs {second['method']})")
        lines.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def largest_fall(mine: list[dict]) -> tuple[float, float, int, int]:
    """Of one method's cells on one task (ascending budgets): the largest paired fall of
    PSNR from a smaller budget to a larger one, its standard error and the two budgets
    (0 and 0 where PSNR never falls)."""
    worst = (0.0, 0.0, 0, 0)
    for j, late in enumerate(mine):
        for early in mine[:j]:
            d = np.subtract(early["psnr_per_image"], late["psnr_per_image"])
            if d.mean() - d.std(ddof=1) / np.sqrt(len(d)) > worst[0] - worst[1]:
                worst = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), early["nfe_budget"], late["nfe_budget"])
    return worst


def monotone_table(cells: list[dict]) -> str:
    """Rows: methods; columns: tasks; each entry the largest fall (:func:`largest_fall`),
    ``✓`` where within one standard error."""
    tasks = [t for t in PAPER_TASKS if any(c["task"] == t for c in cells)]
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method in dict.fromkeys(c["method"] for c in cells):
        row = []
        for task in tasks:
            mine = sorted((c for c in cells if (c["task"], c["method"]) == (task, method)), key=lambda c: c["nfe_budget"])
            if not mine:
                row.append("-")
                continue
            fall, se, a, b = largest_fall(mine)
            row.append("✓" if fall <= se else f"✗ {fall:.2f} ± {se:.2f} ({a} → {b})")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def figure(cells: list[dict], ceiling: list[dict], title: str, path) -> None:
    """PSNR against NFE (top row) and seconds per image (bottom row), one column per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    tasks = [t for t in PAPER_TASKS if any(c["task"] == t for c in cells)]
    methods = list(dict.fromkeys(c["method"] for c in cells))
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.4 * len(tasks), 6.4), squeeze=False)
    for j, task in enumerate(tasks):
        for i, x_key in enumerate(("nfe", "seconds_per_image")):
            ax = axes[i, j]
            for method in methods:
                mine = sorted((c for c in cells if (c["task"], c["method"]) == (task, method)), key=lambda c: c["nfe"])
                ax.plot([c[x_key] for c in mine], [c["psnr_mean"] for c in mine], marker="o", ms=3, label=method)
            for c in ceiling:
                if c["task"] == task:
                    ax.axhline(c["psnr_mean"], color="k", ls=":", lw=1, label="exact posterior mean")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            if i == 0:
                ax.set_xticks(sorted({c["nfe_budget"] for c in cells}))
                ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_xlabel("network evaluations" if i == 0 else "seconds per image")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(task)
            if j == 0:
                ax.set_ylabel("PSNR (dB)")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist", choices=["mnist", "gmm-mnist"])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--nfe", default="20,50,100,250,1000")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only the table and figure from the folder's summary")
    args = ap.parse_args()
    folder = RESULTS / "budgets"
    out = folder / args.prior
    cells, ceiling = [], []
    prior = dmap.load_prior(args.prior)
    for task in PAPER_TASKS:  # one folder per (task, method): each runs when its presets are final
        for method in args.methods.split(","):
            budgets = takes(prior, task, method, [int(n) for n in args.nfe.split(",")])
            where = out / task / method
            if args.report or not budgets:
                cells += json.loads((where / "summary.json").read_text()) if (where / "summary.json").exists() else []
            else:
                cells += bench(
                    args.prior, [task], [method], where, images=args.images, nfe=",".join(map(str, budgets)), workers=args.workers
                )
        done = sorted((out / task).glob("*/summary.json"))
        if args.prior == "gmm-mnist" and done:  # same images and measurements in every folder of the task
            ceiling += exact_mmse_rows(done[0].parent, max(c["nfe_budget"] for c in cells))
    n = cells[0]["n_images"]
    head = (
        f"{args.prior}, {n} test digits, sigma_y = 0.05, equal network evaluations, shipped presets at each budget, "
        f"1 thread per worker (`python benchmarks/budgets.py --prior {args.prior}`)"
    )
    (folder / f"{args.prior}.md").write_text(head + "\n\n" + markdown(ceiling + cells, baseline="dps"))
    best = head + "; best method per budget and task, paired margin over the runner-up\n\n" + best_table(cells)
    (folder / f"{args.prior}-best.md").write_text(best)
    figure(cells, ceiling, head.split(" (")[0], folder / f"{args.prior}.png")
    falls = head + "; largest paired fall of PSNR as the budget grows (dB ± SE, from → to NFE), ✓ within one SE\n\n"
    (folder / f"{args.prior}-monotone.md").write_text(falls + monotone_table(cells))
    print(best)
    print(falls + monotone_table(cells))


if __name__ == "__main__":
    main()
