"""Tune a prior's presets, every method alike, and ship them into ``src/dmap/presets.json``.

    python benchmarks/tune_presets.py --prior mnist [--tasks ...] [--methods ...] [--noise noisy,noiseless]
                                      [--images 8] [--workers 2] [--ship]

The protocol (docs/presets.md): for every (task, method, noise regime) one `dmap tune` call
on the same ``--images`` *train* digits at the budgets 20, 50, 100, 250, 1000 network
evaluations per image (DiffPIR, whose quadratic time grid takes at most 500 steps: 500
last), sigma_y = 0.05 (noisy) or 0 (noiseless), searching each method's strength the same
way: its 5-value log grid (factors of about 3), widened by x3 at an edge at most twice, then
x0.58 and x1.73 around the best — 7 to 9 trials, every trial at every budget — DMAP and
DMAP+CSE at the paper's K = 3 (``--option inner_steps=3``, the K the paper's protocol fixes;
other K: tune them alike).  The strength per budget and the caps where fewer steps did
better come from the same trials (:func:`dmap.tune.tune_budgets`).  Then each cell's table
is checked on ``2 --check - 1`` *validation* digits (63; the tuning's operator and noise
seeds): the preset run at every budget as a run of that budget does, and where a budget's
mean PSNR falls below a smaller one's it becomes a cap at the smaller one's steps
(:func:`dmap.tune.capped`, :data:`dmap.tune.CHECK_ALLOWANCE`) — eight tuning digits are too few to see a
fall reliably (inpaint-box varies by 5 dB from digit to digit).  The check runs in two
halves, ``--check`` digits evenly spaced (``<cell>.check.json``) and the ``--check - 1``
midway between them (``<cell>.check-midway.json``, :func:`dmap.data.mnist_midway`); the caps
come from both together, re-derived from the stored scores when the cell is shipped
(``benchmarks/check_rule.py`` compares rules of the cap, one half against the other).

Each call writes its own preset file and trials under ``--trials``
(``<prior>-<task>-<method>-<noise>.json``, ``.presets.json``); a cell already there is
skipped, so an interrupted campaign resumes.  ``--ship`` writes the cells tuned into the
shipped file, each in place of the earlier entries of its (task, method, regime), and their
notes into ``docs/preset-provenance.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import PAPER_TASKS, RESULTS, ROOT
from dmap.presets import merge, read_preset_file
from dmap.solvers import METHODS
from dmap.tune import capped

SHIPPED = ROOT / "src" / "dmap" / "presets.json"
PROVENANCE = ROOT / "docs" / "preset-provenance.md"
SIGMA = {"noisy": 0.05, "noiseless": 0.0}
METHODS_TUNED = "dmap,dps,dsg,pigdm,reddiff,daps,diffpir"


def budgets(method: str) -> tuple[int, ...]:
    """The budgets every cell is tuned and checked at (DiffPIR's grid takes at most 500 steps)."""
    return (20, 50, 100, 250, 500) if method == "diffpir" else (20, 50, 100, 250, 1000)


def command(prior: str, task: str, method: str, noise: str, images: int, out: Path) -> list[str]:
    """The `dmap tune` call of one cell."""
    paper = METHODS[method].options.paper_protocol
    cmd = ["dmap", "tune", "--prior", prior, "--task", task, "--method", method, "--images", str(images)]
    cmd += ["--nfe", ",".join(map(str, budgets(method))), "--sigma-y", str(SIGMA[noise]), "--out", str(out), "--json"]
    return cmd + [a for k, v in paper.items() for a in ("--option", f"{k}={v}")]


def run_cell(prior: str, task: str, method: str, noise: str, images: int, folder: Path) -> None:
    """One `dmap tune` call, its trials and preset file written when it finishes."""
    stem = folder / f"{prior}-{task}-{method}-{noise}"
    trials, presets = stem.with_suffix(".json"), stem.with_suffix(".presets.json")
    if trials.exists():
        return
    cmd = command(prior, task, method, noise, images, presets.with_suffix(".tmp"))
    print(" ".join(cmd), flush=True)
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    presets.with_suffix(".tmp").replace(presets)
    trials.with_suffix(".part").write_text(result)
    trials.with_suffix(".part").replace(trials)


def check_cell(cell: tuple[str, str, str, str], images: int, folder: Path) -> None:
    """The cell's budget table checked on both halves of the validation digits, each in a
    process of its own (:func:`check`); a half checked already is skipped."""
    for half, flag in ((".check.json", []), (".check-midway.json", ["--midway"])):
        if images and not folder.joinpath("-".join(cell) + half).exists():
            cmd = [sys.executable, __file__, "--check-cell", ",".join(cell), "--check", str(images), "--trials", str(folder)]
            print(" ".join(cmd + flag), flush=True)
            subprocess.run(cmd + flag, check=True, cwd=ROOT)


def tuned_entry(cell: dict):
    """The entry of a cell's preset file (one prior, task and method; its table ``by_steps``
    as tuned, before any check) and its options."""
    ((_, tasks),) = cell["presets"].items()
    ((_, methods),) = tasks.items()
    ((method, (entry, *_)),) = methods.items()
    return entry, METHODS[method].options.from_dict({k: v for k, v in entry.items() if k not in ("noise", "by_steps")}, method)


def check(cell: tuple[str, str, str, str], images: int, folder: Path, midway: bool = False) -> None:
    """One half of a cell's check, one thread: the validation PSNR of each image at every
    budget, the preset run as a run of that budget does (:func:`dmap.tune.check_runs`), on
    ``images`` validation digits evenly spaced or (``midway``) the ``images - 1`` between
    them (noise and sampler streams after the first half's)."""
    import torch

    from dmap.catalogue import load_prior, tuning_problem
    from dmap.tune import check_budgets

    torch.set_num_threads(1)
    prior, task, method, noise = cell
    stem = folder / "-".join(cell)
    entry, options = tuned_entry(read_preset_file(stem.with_suffix(".presets.json")))
    model = load_prior(prior)
    t, x, y = tuning_problem(model, task, images, sigma_y=SIGMA[noise], split="validation", midway=midway)
    _, scores = check_budgets(model, t, method, x, y, options, entry["by_steps"], budgets(method), offset=images if midway else 0)
    record = {"split": "validation", "images": len(x), "midway": midway, "nfe": budgets(method)}
    record.update(psnr_per_budget=[sum(v) / len(v) for v in scores], psnr_per_image=scores)
    out = stem.with_suffix(".check-midway.json" if midway else ".check.json")
    out.with_suffix(".part").write_text(json.dumps(record) + "\n")
    out.with_suffix(".part").replace(out)


def check_scores(stem: Path) -> tuple[list[int], list[list[float]]] | None:
    """The budgets and the PSNR of each validation image at each, both halves of a cell's
    check together (None if it was not checked)."""
    halves = [
        json.loads(p.read_text()) for p in (stem.with_suffix(".check.json"), stem.with_suffix(".check-midway.json")) if p.exists()
    ]
    return (halves[0]["nfe"], [sum(v, []) for v in zip(*(h["psnr_per_image"] for h in halves))]) if halves else None


def apply_check(cell: dict, stem: Path) -> None:
    """A cell's preset file with its table capped by its check's stored scores
    (:func:`dmap.tune.capped`), and its notes saying so: the validation PSNR at each budget
    and the checked table."""
    found = check_scores(stem)
    if found is None:
        return
    nfe, scores = found
    entry, options = tuned_entry(cell)
    table = {str(k): v for k, v in capped(options, entry["by_steps"], tuple(nfe), scores).items()}
    for methods in (m for tasks in cell["presets"].values() for m in tasks.values()):
        for e in (e for entries in methods.values() for e in entries):
            e["by_steps"] = table
    means = " / ".join(f"{sum(v) / len(v):.2f}" for v in scores)
    said = f"; checked on {len(scores[0])} validation digits (PSNR {means} dB at {nfe}): by_steps "
    cell["notes"] = {k: v + said + json.dumps(table) for k, v in cell.get("notes", {}).items()}


def ship(prior: str, folder: Path) -> None:
    """The prior's tuned cells into the shipped file — each (task, method, regime) tuned
    replaces that regime's earlier entries of the method, the rest is kept — and their
    notes into the provenance table (in place of the earlier entries' rows)."""
    data = json.loads(SHIPPED.read_text())
    table = data["presets"].setdefault(prior, {})
    notes: dict = {}
    for path in sorted(folder.glob(f"{prior}-*.presets.json")):
        cell = read_preset_file(path)
        apply_check(cell, path.with_name(path.name.removesuffix(".presets.json")))
        for task, methods in cell["presets"][prior].items():
            for method, entries in methods.items():
                tuned = {e["noise"] for e in entries}
                old = table.setdefault(task, {}).get(method, [])
                table[task][method] = [e for e in old if e.get("noise", "noisy") not in tuned]
                for entry in entries:
                    merge(table[task], method, entry, default=True)
        notes.update(cell.get("notes", {}))
    SHIPPED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    replaced = {"/".join(k.split("/")[:3]) for k in notes if k.split("/")[3] == "noisy"}
    head, _, rest = PROVENANCE.read_text().partition("| preset |")
    rows = [line for line in rest.splitlines()[2:] if line.startswith("| `") and line.split("`")[1] not in replaced | set(notes)]
    rows += [f"| `{k}` | {v.replace('|', '/')} |" for k, v in notes.items()]
    rows.sort(key=lambda row: (row.split("`")[1].count("/"), row.split("`")[1]))
    PROVENANCE.write_text(head + "| preset | how it was made |\n|---|---|\n" + "\n".join(rows) + "\n")
    print(f"shipped {len(notes)} {prior} presets into {SHIPPED}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--tasks", default=",".join(PAPER_TASKS))
    ap.add_argument("--methods", default=METHODS_TUNED)
    ap.add_argument("--noise", default="noisy,noiseless", help="regimes: noisy (sigma_y 0.05), noiseless (0)")
    ap.add_argument("--images", type=int, default=8, help="train digits (8)")
    ap.add_argument("--workers", type=int, default=1, help="cells tuned at once, one thread each (1)")
    ap.add_argument("--trials", default=str(RESULTS / "tune" / "v3"), help="folder of the cells' trials and preset files")
    ap.add_argument(
        "--check",
        type=int,
        default=32,
        help="validation digits evenly spaced each tuned cell's budget table is checked on, and the ones midway "
        "between them (32: 63 in all); a cap where a budget falls (0: no check)",
    )
    ap.add_argument("--check-cell", metavar="PRIOR,TASK,METHOD,NOISE", help=argparse.SUPPRESS)  # (one check, in-process)
    ap.add_argument("--midway", action="store_true", help=argparse.SUPPRESS)  # (its second half)
    ap.add_argument("--ship", action="store_true", help="write the tuned (and checked) cells into the shipped preset file")
    args = ap.parse_args()
    folder = Path(args.trials)
    if args.check_cell:
        check(tuple(args.check_cell.split(",")), args.check, folder, args.midway)
        return
    folder.mkdir(parents=True, exist_ok=True)
    cells = [(n, m, t) for n in args.noise.split(",") for m in args.methods.split(",") for t in args.tasks.split(",")]

    def tune_and_check(task: str, method: str, noise: str) -> None:
        run_cell(args.prior, task, method, noise, args.images, folder)
        check_cell((args.prior, task, method, noise), args.check, folder)

    with ThreadPoolExecutor(args.workers) as pool:
        for done in [pool.submit(tune_and_check, t, m, n) for n, m, t in cells]:
            done.result()
    if args.ship:
        ship(args.prior, folder)


if __name__ == "__main__":
    main()
