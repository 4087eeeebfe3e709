"""The paper's three findings about DPS, measured with the exact mixture prior.

    python benchmarks/paper_findings.py [--pairs 32]

Runs ``dmap analyze --prior gmm-mnist`` for the five paper tasks into
``benchmarks/results/findings/<task>/`` (figures + analysis.json; a task already done is
skipped) and writes the summary ``benchmarks/results/findings/summary.md``.
"""

from __future__ import annotations

import argparse
import json

from common import PAPER_TASKS, ROOT
from dmap.cli import main as dmap_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=32)
    args = ap.parse_args()
    root = ROOT / "benchmarks" / "results" / "findings"
    lines = [f"gmm-mnist, sigma_y = 0.05, {args.pairs} test digits (`python benchmarks/paper_findings.py`). "
             "Score error: mean over t = 50..1000 of ||s - s*||^2 / n against the exact conditional score s*. "
             "Score mean: ||E s|| / Monte-Carlo error, median over t (about 1 for a valid score). Diversity: mean "
             "per-pixel std of 16 restorations of one measurement.", "",
             "| task | score error: prior | score error: DPS | mean z: exact | mean z: prior | mean z: DPS "
             "| diversity: exact | DPS | DSG | DMAP |", "|" + "---|" * 10]
    for task in PAPER_TASKS:
        out = root / task
        if not (out / "analysis.json").exists():
            assert dmap_main(["analyze", "--task", task, "--pairs", str(args.pairs), "--out", str(out)]) == 0
        r = json.loads((out / "analysis.json").read_text())

        def err(name: str) -> float:
            return sum(e["mean"] for e in r["score_error"][name]) / len(r["score_error"][name])

        def z(name: str) -> float:
            return sorted(m["z"] for m in r["score_mean"][name])[len(r["score_mean"][name]) // 2]

        div = {k: v["pixel_std"] for k, v in r["diversity"].items()}
        lines.append(f"| {task} | {err('unconditional'):.3g} | {err('dps'):.3g} | {z('exact'):.2f} | "
                     f"{z('unconditional'):.2f} | {z('dps'):.1f} | {div['exact posterior']:.3f} | {div['dps']:.3f} | "
                     f"{div['dsg']:.3f} | {div['dmap']:.3f} |")
    (root / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
