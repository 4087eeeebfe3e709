"""Does one setting hold at every budget?  Read from the trials of `dmap tune` over several
budgets (``benchmarks/results/tune/<prior>-<task>-<method>-<budgets>.json``, written by
`tune_presets.py --nfe ...`), no new solve:

    python benchmarks/budget_gaps.py [--prior mnist] [--methods pigdm,daps,reddiff,diffpir] [--reference 250]

For each (method, task) and budget n: the best PSNR of any trial at n (the settings tried
for all budgets and those widened at n alone: "tuned at n"), and the PSNR at n of the one
setting best at ``--reference`` evaluations ("tuned at 250"); the worst gap over the
budgets is the issue's criterion (within 1 dB).  Train digits, as the tuning.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

from common import RESULTS

TUNE = RESULTS / "tune"


def gaps(path, key: str, reference: int) -> tuple[list[int], dict[int, float], dict[int, float], float] | None:
    """Budgets, best PSNR per budget, PSNR per budget of the setting best at ``reference``,
    that setting (None if the tuning did not include ``reference``)."""
    trials = json.loads(path.read_text())["trials"]
    shared = [t for t in trials if "budget_only" not in t]
    budgets = shared[0]["nfe"]
    if reference not in budgets:
        return None
    best = defaultdict(lambda: -math.inf)
    for t in shared:
        for n, p in zip(budgets, t["psnr_per_budget"]):
            best[n] = max(best[n], p)
    for t in trials:
        if "budget_only" in t:
            best[t["budget_only"]] = max(best[t["budget_only"]], t["psnr"])
    j = budgets.index(reference)
    chosen = max(shared, key=lambda t: t["psnr_per_budget"][j])
    return budgets, dict(best), dict(zip(budgets, chosen["psnr_per_budget"])), chosen[key]


def main() -> None:
    import dmap

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--methods", default="pigdm,daps,reddiff,diffpir")
    ap.add_argument("--reference", type=int, default=250)
    args = ap.parse_args()
    lines = []
    for method in args.methods.split(","):
        key = dmap.METHODS[method].options.strength()
        for path in sorted(TUNE.glob(f"{args.prior}-*-{method}-*_*.json")):  # tuned over several budgets
            task = path.stem[len(args.prior) + 1 : path.stem.rindex(f"-{method}-")]
            found = gaps(path, key, args.reference)
            if found is None:
                continue
            budgets, best, at_ref, value = found
            if not lines:
                lines = [f"| method | task | strength best at {args.reference} | per budget n: tuned at n / that strength "
                         "| worst gap (dB) |", "|---|---|---|---|---|"]  # fmt: skip
            worst = max(best[n] - at_ref[n] for n in budgets)
            cells = "; ".join(f"{n}: {best[n]:.2f} / {at_ref[n]:.2f}" for n in budgets)
            lines.append(f"| {method} | {task} | {key} {value:g} | {cells} | {worst:.2f} |")
    text = f"prior {args.prior}, 8 train digits, PSNR (dB) from the tuning trials (`python benchmarks/budget_gaps.py`)\n\n"
    text += "\n".join(lines) + "\n"
    (RESULTS / f"budget_gaps_{args.prior}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
