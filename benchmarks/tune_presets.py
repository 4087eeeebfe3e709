"""Tune the shipped presets with `dmap tune` and write them into ``src/dmap/presets.json``.

    python benchmarks/tune_presets.py [--prior gmm-mnist] [--tasks ...] [--methods dps,dsg,dmap]
                                      [--images 8] [--nfe 100,250,1000] [--around PRIOR]

For every task and method one `dmap tune` call (a coarse-to-fine search of the step size,
and K for DMAP, on *train* digits, maximizing the mean PSNR over the ``--nfe`` budgets in
network evaluations per image: one setting for all of them; ``--around PRIOR`` searches
locally around that prior's presets, K kept).
Each call adds its choice and a note saying how it was made to the preset file (``--out``,
default the shipped one, whose notes then move to ``docs/preset-provenance.md``: the shipped
file holds values only); its trials go to ``<trials>/<prior>-<task>-<method>-<nfe>.json`` (budgets joined by _)
(default ``benchmarks/results/tune/``), and a pair already tuned there is skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import dmap
from common import RESULTS, ROOT

SHIPPED = ROOT / "src" / "dmap" / "presets.json"
PROVENANCE = ROOT / "docs" / "preset-provenance.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="gmm-mnist")
    ap.add_argument("--tasks", default=",".join(dmap.TASKS))
    ap.add_argument("--methods", default="dps,dsg,dmap")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--nfe", default="100,250,1000", help="budgets, one setting for all (100,250,1000)")
    ap.add_argument("--around", help="local search around this prior's presets (e.g. gmm-mnist), K kept")
    ap.add_argument("--out", default=str(SHIPPED), help="preset file (the shipped one)")
    ap.add_argument("--trials", default=str(RESULTS / "tune"), help="folder for the trials of each call")
    args = ap.parse_args()
    presets = Path(args.out)
    folder = Path(args.trials)
    folder.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            trials = folder / f"{args.prior}-{task}-{method}-{args.nfe.replace(',', '_')}.json"
            if trials.exists():
                continue
            cmd = [
                "dmap",
                "tune",
                "--prior",
                args.prior,
                "--task",
                task,
                "--method",
                method,
                "--images",
                str(args.images),
                "--nfe",
                args.nfe,
                "--out",
                str(presets),
                "--json",
            ]
            cmd += ["--around", args.around] if args.around else []
            print(" ".join(cmd), flush=True)
            result = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            tmp = trials.with_suffix(".tmp")
            tmp.write_text(result)
            tmp.replace(trials)
            if presets == SHIPPED:
                move_notes()
    print("wrote", presets)


def move_notes() -> None:
    """The notes ``dmap tune`` wrote into the shipped preset file, moved to the provenance table."""
    data = json.loads(SHIPPED.read_text())
    notes = data.pop("notes", {})
    rows = [line for line in PROVENANCE.read_text().splitlines() if line.startswith("| `")]
    known = {row.split("`")[1]: row.split(" | ", 1)[1].removesuffix(" |") for row in rows}
    known.update({k: v.replace("|", "/") for k, v in notes.items()})
    head = PROVENANCE.read_text().split("| preset |")[0]
    table = ["| preset | how it was made |", "|---|---|"]
    table += [f"| `{k}` | {known[k]} |" for k in sorted(known, key=lambda k: (k.count("/"), k))]
    PROVENANCE.write_text(head + "\n".join(table) + "\n")
    SHIPPED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
