"""Which rule caps a preset's budget table: a fall beyond one standard error, or any fall?

    python benchmarks/check_rule.py [--prior mnist] [--trials benchmarks/results/tune/v3]

Decided on validation digits only.  Every tuned cell's check ran on two disjoint halves of
validation digits (``tune_presets.py``: 32 evenly spaced, ``<cell>.check.json``; the 31
midway between them, ``<cell>.check-midway.json``).  For each rule — cap a budget whose
mean PSNR falls below the last budget standing by more than one paired standard error
(``se``, the rule before this decision), or by any amount (``any``, the rule it chose) — the caps are placed from one
half's scores and the capped table is scored on the other half, both ways round.  A capped
budget runs its smaller budget's setting, so its score on the other half is that run's: no
solve is needed.  Per rule: the (cell, half) pairs whose held-out PSNR falls from a smaller
budget to a larger one by more than one paired standard error (the test of
``budgets.py``'s monotone table), the caps placed, and the held-out mean PSNR over every
budget of every cell.

The rule of the decision, written down before the second half was run (docs/presets.md):
``any`` replaces ``se`` if it leaves fewer held-out falls and its held-out mean PSNR is no
more than 0.05 dB below ``se``'s; otherwise ``se`` stays.  Written to
``benchmarks/results/tune/check_rule_<prior>.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from budgets import largest_fall
from common import RESULTS
from dmap.tune import falls

RULES = {"se": 1.0, "any": 0.0}
COST_DB = 0.05  # the held-out PSNR the stricter rule may cost


def halves(folder: Path, prior: str) -> dict[str, tuple[list[int], list[list[float]], list[list[float]]]]:
    """``{cell: (budgets, first half's scores, second half's)}`` of every cell of ``prior``
    checked on both halves (scores: the PSNR of each image at each budget)."""
    out = {}
    for first in sorted(folder.glob(f"{prior}-*.check.json")):
        second = first.with_name(first.name.replace(".check.json", ".check-midway.json"))
        tuned = json.loads(first.with_name(first.name.replace(".check.json", ".presets.json")).read_text())
        if second.exists() and list(tuned["presets"]) == [prior]:  # (not mnist-latent's cells for mnist)
            a, b = json.loads(first.read_text()), json.loads(second.read_text())
            out[first.name.removesuffix(".check.json")] = (a["nfe"], a["psnr_per_image"], b["psnr_per_image"])
    return out


def held_out(nfe: list[int], fit: list[list[float]], other: list[list[float]], allowance: float) -> tuple[int, bool, float]:
    """Caps placed from ``fit`` by a rule of ``allowance`` standard errors, scored on
    ``other``: the caps, whether PSNR there falls beyond one SE, its mean over budgets."""
    serve = falls(fit, allowance)
    served = [{"psnr_per_image": other[used], "nfe_budget": n} for n, used in zip(nfe, serve)]
    fall, se, _, _ = largest_fall(served)
    return sum(used != j for j, used in enumerate(serve)), fall > se, float(np.mean([np.mean(s["psnr_per_image"]) for s in served]))


def report(cells: dict, prior: str) -> str:
    """The markdown table of both rules, per cell and in all, and the decision."""
    rows, totals, failed = [], {r: np.zeros(3) for r in RULES}, []
    for cell, (nfe, a, b) in cells.items():
        row, name = [], cell.removeprefix(prior + "-")
        got = {rule: [held_out(nfe, a, b, allowance), held_out(nfe, b, a, allowance)] for rule, allowance in RULES.items()}
        if not all(np.isfinite(g[2]) for runs in got.values() for g in runs):
            failed.append(f"`{name}`")  # (a failed budget served: no mean to compare)
        for rule, runs in got.items():
            mean = sum(g[2] for g in runs) / 2 if f"`{name}`" not in failed else 0.0
            totals[rule] += [sum(g[0] for g in runs), sum(g[1] for g in runs), mean]
            row.append(" / ".join(f"caps {g[0]}{', fall' if g[1] else ''}, {g[2]:.2f}" for g in runs))
        rows.append(f"| `{name}` | " + " | ".join(row) + " |")
    n = len(cells) - len(failed)
    (caps_se, falls_se, db_se), (caps_any, falls_any, db_any) = totals["se"], totals["any"]
    cost = (db_se - db_any) / n
    adopt = falls_any < falls_se and cost <= COST_DB
    head = (
        f"# Which rule caps a budget table ({prior}, {n} cells, caps from one half of the validation digits, "
        "scored on the other; `python benchmarks/check_rule.py`)\n\n"
        "Each entry: caps placed from the first half (32 digits) scored on the second (31) / the other way round; "
        "`fall`: the held-out PSNR falls beyond one paired SE; then the held-out mean PSNR over budgets (dB).\n\n"
        "| cell | se: fall beyond one SE | any: any fall |\n|---|---|---|\n"
    )
    summary = (
        f"\n\nIn all ({2 * len(cells)} held-out halves): `se` places {caps_se:.0f} caps and leaves {falls_se:.0f} falls; "
        f"`any` places {caps_any:.0f} caps and leaves {falls_any:.0f} falls; held-out mean PSNR per cell, `any` − `se`: "
        f"{-cost:+.3f} dB"
        + (f" (over the {n} cells where every budget served ran; {', '.join(failed)} failed)" if failed else "")
        + f".\n\nDecision (fewer falls at a cost of at most {COST_DB} dB): "
        + ("**any** replaces se." if adopt else "**se** stays.")
        + "\n"
    )
    return head + "\n".join(rows) + summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--trials", default=str(RESULTS / "tune" / "v3"), help="folder of the cells' checks")
    args = ap.parse_args()
    cells = halves(Path(args.trials), args.prior)
    if not cells:
        raise SystemExit(f"no cell of {args.prior} is checked on both halves in {args.trials}")
    text = report(cells, args.prior)
    (RESULTS / "tune" / f"check_rule_{args.prior}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
