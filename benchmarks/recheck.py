"""A preset's fall between two budgets, checked again on the validation digits its check did not use.

    python benchmarks/recheck.py --cell mnist,deblur-aniso,pigdm,noisy --budgets 50,250

The check of a tuned table (``tune_presets.py``) ran on 63 of the 498 validation digits;
this runs the tuned preset at two of its budgets, as a run of each budget does
(:func:`dmap.tune.check_runs`), on the other 435 (noise and sampler streams after the
check's 63), and reports the paired difference (larger budget − smaller) on them and on all
498 together.  For the question of a fall seen on test digits: is it the preset (it falls
on validation digits too) or chance?

The decision, written down before it ran (docs/presets.md): the check's own rule (any fall
of the validation mean, :data:`dmap.tune.CHECK_ALLOWANCE`) applied to all 498 validation
digits.  If the larger budget's mean falls below the smaller's there, the cell's check is to
be extended to these digits and the cap shipped; if not, the preset stands and the test
fall counts as chance.  Written to ``benchmarks/results/tune/recheck_<cell>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from common import RESULTS
from dmap.catalogue import TASK_SEED, load_prior
from dmap.data import mnist, mnist_midway, mnist_spread
from dmap.operators import make_task
from dmap.presets import read_preset_file
from dmap.rng import sample_generators, seeded
from dmap.tune import check_runs, evaluate, paired_se
from tune_presets import SIGMA, check_scores, tuned_entry

CHECKED = 32  # the check's evenly spaced validation digits (and the 31 midway between them)


def unused_digits() -> torch.Tensor:
    """The validation digits neither half of the check used, in split order."""
    used = set(mnist_spread(CHECKED, "validation")[1].tolist()) | set(mnist_midway(CHECKED)[1].tolist())
    x, _ = mnist("validation")
    return x[[i for i in range(len(x)) if i not in used]]


def recheck(cell: tuple[str, str, str, str], budgets: tuple[int, int], folder) -> dict:
    """The PSNR of each unused validation digit at both budgets, and the decision's numbers."""
    prior_name, task_name, method, noise = cell
    stem = folder / "-".join(cell)
    entry, options = tuned_entry(read_preset_file(stem.with_suffix(".presets.json")))
    prior = load_prior(prior_name)
    x = unused_digits()
    task = make_task(task_name, prior.image_shape, sigma_y=SIGMA[noise], generator=seeded(TASK_SEED))
    offset = 2 * CHECKED - 1
    y = task.simulate(x, generator=sample_generators(TASK_SEED + 1, len(x), offset))
    runs = check_runs(options, entry["by_steps"], budgets)
    scores = [evaluate(prior, task, method, x, y, 0, run, offset=offset) for run in runs]
    nfe, checked = check_scores(stem)
    both = [checked[nfe.index(b)] + s for b, s in zip(budgets, scores)]
    report = {"cell": list(cell), "budgets": list(budgets), "runs": [r.to_dict() for r in runs], "psnr_per_image": scores}
    for name, (small, large) in (("unused", scores), ("all", both)):
        d = sum(large) / len(large) - sum(small) / len(small)
        report[name] = {"images": len(small), "difference": d, "se": paired_se(large, small)}
    report["falls"] = report["all"]["difference"] < 0 or not math.isfinite(report["all"]["difference"])
    return report


def markdown(r: dict) -> str:
    a, b = r["budgets"]
    rows = [f"| {k} | {r[k]['images']} | {r[k]['difference']:+.3f} ± {r[k]['se']:.3f} |" for k in ("unused", "all")]
    verdict = "falls: the check extends to these digits and caps it" if r["falls"] else "does not fall: the preset stands"
    return (
        f"`python benchmarks/recheck.py --cell {','.join(r['cell'])} --budgets {a},{b}`: PSNR at {b} − PSNR at {a} "
        "(paired, dB), validation digits only\n\n| digits | n | difference |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nThe rule (any fall of the mean over all {r['all']['images']} validation digits): {verdict}.\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", required=True, metavar="PRIOR,TASK,METHOD,NOISE")
    ap.add_argument("--budgets", required=True, metavar="SMALL,LARGE", help="the two budgets of the fall")
    ap.add_argument("--trials", default=str(RESULTS / "tune" / "v3"), help="folder of the tuned cells and their checks")
    args = ap.parse_args()
    cell = tuple(args.cell.split(","))
    small, large = sorted(int(b) for b in args.budgets.split(","))
    torch.set_num_threads(1)
    r = recheck(cell, (small, large), Path(args.trials))
    out = RESULTS / "tune" / f"recheck_{'-'.join(cell)}"
    out.with_suffix(".json").write_text(json.dumps(r) + "\n")
    out.with_suffix(".md").write_text(markdown(r))
    print(markdown(r))


if __name__ == "__main__":
    main()
