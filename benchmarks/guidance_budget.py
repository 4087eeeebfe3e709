"""Does one step size hold at every budget?  PSNR on the tuning digits (train) over a log
grid of each method's strength at several budgets, for each guidance parametrization, and
of the shipped presets at the same budgets.

    python benchmarks/guidance_budget.py [--prior mnist] [--methods dps,dmap,dsg,pigdm,daps,reddiff,diffpir]
        [--tasks inpaint-box,...] [--guidance time,constant] [--nfe 50,250,1000]
        [--grid 0.1,0.3,1,3] [--rate-grid 0.01,0.03,0.1,0.3] [--images 8]

Resumable: every trial is a line of ``benchmarks/results/guidance_budget/<prior>.jsonl``
(``<prior>-validation.jsonl`` on validation digits; ``<prior>-test.jsonl`` holds the checks
made on test digits before dmap 0.7; ``-<images>`` added when not 8);
a rerun skips the trials already there and rewrites ``<prior>.md``: per (method, task,
guidance), the best PSNR at each budget and the PSNR there of the setting best at 250
(the baselines pigdm, daps, reddiff, diffpir: their strength on their own tuning grid, the
other options from their preset, guidance ``-``);
then per (method, task) the shipped preset's PSNR at each budget (its strength for the
steps it takes, ``guidance`` = ``preset``) and its gap to the best grid value there.

    python benchmarks/guidance_budget.py --from-tune [--prior mnist] [--methods pigdm,daps,reddiff,diffpir]

reads the same question off the trials of `dmap tune` over several budgets instead, no new
solve (``benchmarks/results/tune/<prior>-<task>-<method>-<budgets>.json``, written by
`tune_presets.py --nfe ...`): for each (method, task) and budget n, the best PSNR of any
trial at n and the PSNR at n of the one setting best at ``--reference`` evaluations (250),
into ``benchmarks/results/budget_gaps_<prior>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections import defaultdict

import torch

from common import RESULTS
from dmap.catalogue import PAPER_TASKS, load_prior, tuning_problem
from dmap.presets import resolve_options
from dmap.solvers import get_method
from dmap.tune import evaluate

OUT = RESULTS / "guidance_budget"
TUNE = RESULTS / "tune"
DEFAULT_METHODS = "dps,dmap,dsg"


def trials(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def table(rows: list[dict], budgets: list[int], reference: int = 250) -> str:
    """Markdown: best PSNR (its setting) per budget, and the setting best at ``reference``."""
    cells = defaultdict(dict)
    for r in rows:
        cells[(r["method"], r["task"], r["guidance"])].setdefault(r["nfe"], {})[r["value"]] = r["psnr"]
    head = "| method | task | guidance | " + " | ".join(f"best @ {n} (value)" for n in budgets)
    head += f" | tuned @ {reference}: " + " / ".join(map(str, budgets)) + " | worst gap (dB) |\n"
    lines = [head + "|---" * (5 + len(budgets)) + "|"]
    for (method, task, guidance), by_nfe in sorted(cells.items()):
        if guidance == "preset" or reference not in by_nfe:
            continue
        mine = [n for n in budgets if n in by_nfe]  # DiffPIR takes at most 500 steps
        shared = max(by_nfe[reference], key=by_nfe[reference].get)
        best = {n: max(by_nfe[n].items(), key=lambda kv: kv[1]) for n in mine}
        at_shared = {n: by_nfe[n].get(shared, float("nan")) for n in mine}
        gap = max(best[n][1] - at_shared[n] for n in mine)
        lines.append(
            f"| {method} | {task} | {guidance} | "
            + " | ".join(f"{best[n][1]:.2f} ({best[n][0]:g})" if n in best else "-" for n in budgets)
            + f" | {' / '.join(f'{at_shared[n]:.2f}' if n in best else '-' for n in budgets)} ({shared:g}) | {gap:.2f} |"
        )
    return "\n".join(lines) + "\n"


def preset_table(rows: list[dict], budgets: list[int]) -> str:
    """Markdown: the shipped preset's PSNR at each budget, minus the best of the grid there."""
    best, preset = defaultdict(lambda: -math.inf), {}
    for r in rows:
        key = (r["method"], r["task"], r["nfe"])
        if r["guidance"] == "preset":
            preset[key] = r
        elif r["guidance"] in ("time", "-"):
            best[key] = max(best[key], r["psnr"])
    head = "| method | task | " + " | ".join(f"preset @ {n} (gap to grid best)" for n in budgets) + " |\n"
    lines = [head + "|---" * (2 + len(budgets)) + "|"]
    for method, task in sorted({k[:2] for k in preset}):
        cells = []
        for n in budgets:
            r = preset.get((method, task, n))
            gap = r["psnr"] - max(best[(method, task, n)], r["psnr"]) if r else math.nan
            cells.append(f"{r['psnr']:.2f} ({gap:+.2f})" if r else "-")
        lines.append(f"| {method} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def from_tune(prior: str, methods: str, reference: int) -> None:
    """``budget_gaps_<prior>.md`` from the tuning trials (module docstring)."""
    import dmap

    args = argparse.Namespace(prior=prior, methods=methods, reference=reference)
    lines = []
    for method in args.methods.split(","):
        key = dmap.METHODS[method].options.strength()
        for path in sorted(TUNE.glob(f"{args.prior}-*-{method}-*_*.json")):  # tuned over several budgets
            task = path.stem[len(args.prior) + 1 : path.stem.rindex(f"-{method}-")]
            if task not in dmap.TASKS:  # another prior whose name starts with this one's (mnist-latent)
                continue
            found = gaps(path, key, args.reference)
            if found is None:
                continue
            budgets, best, at_ref, value = found
            if not lines:
                lines = [
                    f"| method | task | strength best at {args.reference} | per budget n: tuned at n / that strength "
                    "| worst gap (dB) |",
                    "|---|---|---|---|---|",
                ]
            worst = max(best[n] - at_ref[n] for n in budgets)
            cells = "; ".join(f"{n}: {best[n]:.2f} / {at_ref[n]:.2f}" for n in budgets)
            lines.append(f"| {method} | {task} | {key} {value:g} | {cells} | {worst:.2f} |")
    command = "python benchmarks/guidance_budget.py --from-tune"
    text = f"prior {args.prior}, 8 train digits, PSNR (dB) from the tuning trials (`{command}`)\n\n"
    text += "\n".join(lines) + "\n"
    (RESULTS / f"budget_gaps_{args.prior}.md").write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--tasks", default=",".join(PAPER_TASKS))
    ap.add_argument("--guidance", default="time", help="parametrizations of the guided methods (time, constant)")
    ap.add_argument("--nfe", default="50,250,1000")
    ap.add_argument("--grid", default="0.1,0.3,1,3", help="step sizes of dps and dmap (per unit of time)")
    ap.add_argument("--rate-grid", default="0.01,0.03,0.1,0.3", help="guidance rates of dsg (per unit of time)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument(
        "--split",
        choices=["train", "validation"],
        default="train",
        help="train: the tuning digits; validation: digits evenly spaced over the validation split "
        "(<prior>-validation.*; a check of presets never runs on test digits, docs/presets.md)",
    )
    ap.add_argument("--from-tune", action="store_true", help="read the gaps off the tuning trials instead (no solve)")
    ap.add_argument("--reference", type=int, default=250, help="with --from-tune: the budget the one setting is chosen at")
    args = ap.parse_args()
    if args.from_tune:
        return from_tune(
            args.prior, args.methods if args.methods != DEFAULT_METHODS else "pigdm,daps,reddiff,diffpir", args.reference
        )
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    name = args.prior + ("-validation" if args.split == "validation" else "") + (f"-{args.images}" if args.images != 8 else "")
    path = OUT / f"{name}.jsonl"
    done = {(r["method"], r["task"], r["guidance"], r["nfe"], r["value"]) for r in trials(path)}
    presets_done = {(r["method"], r["task"], r["nfe"]): r["options"] for r in trials(path) if r["guidance"] == "preset"}
    prior = load_prior(args.prior)
    budgets = [int(v) for v in args.nfe.split(",")]
    for task_name in args.tasks.split(","):
        task, x, y = tuning_problem(prior, task_name, args.images, split=args.split)
        for method in args.methods.split(","):
            options = get_method(method).options
            fields = {f.name: f for f in dataclasses.fields(options)}
            strength = options.strength()
            if "guidance" in fields:
                grid, kinds = args.rate_grid if strength == "guidance_rate" else args.grid, args.guidance.split(",")
            else:  # the baselines: their own tuning grid, "-" (one parametrization)
                grid, kinds = ",".join(map(str, fields[strength].metadata["grid"])), ["-"]
            for guidance in kinds + ["preset"]:
                for nfe in budgets:
                    for value in [float(v) for v in grid.split(",")] if guidance != "preset" else [0.0]:
                        if guidance == "preset":  # rerun when the presets changed
                            opts = resolve_options(method, prior.name, task_name, nfe=nfe)
                            if presets_done.get((method, task_name, nfe)) == opts.to_dict():
                                continue
                        elif (method, task_name, guidance, nfe, value) in done:
                            continue
                        elif guidance == "-":  # the preset's other options
                            opts = resolve_options(method, prior.name, task_name, nfe=nfe, **{strength: value})
                        else:
                            opts = options(**{strength: value}, guidance=guidance).for_budget(nfe)
                        start = time.perf_counter()
                        score = evaluate(prior, task, method, x, y, 0, opts)
                        row = {
                            "method": method,
                            "task": task_name,
                            "guidance": guidance,
                            "nfe": nfe,
                            "value": value,
                            "options": opts.to_dict(),
                            "psnr": score,
                            "seconds": time.perf_counter() - start,
                        }
                        with path.open("a") as f:
                            f.write(json.dumps(row) + "\n")
    rows = trials(path)
    budgets = sorted({r["nfe"] for r in rows})
    (OUT / f"{name}.md").write_text(
        f"prior {args.prior}, {args.images} {args.split} digits, PSNR (dB); -inf: diverged\n\n"
        + table(rows, budgets)
        + "\nThe shipped presets at each budget (`dmap.resolve_options(..., nfe=N)`):\n\n"
        + preset_table(rows, budgets)
    )
    print((OUT / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
