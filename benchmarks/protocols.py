"""DPS against DMAP (and their CSE variants) under both comparison protocols.

    python benchmarks/protocols.py --protocol equal-nfe --budgets 100,1000 [--sigma-y 0.05]
        [--methods dps,dmap,dps+cse,dmap+cse] [--images 64] [--workers 2]
    python benchmarks/protocols.py --protocol equal-steps --budgets 250 --sigma-y 0 --methods dps,dmap
    python benchmarks/protocols.py --table        # the README table from every folder run

``equal-nfe``: every method spends the same network evaluations per image (its steps are
the most that fit); ``equal-steps``: the paper's protocol, every method the same reverse
steps and DMAP with K = 3 (it then spends about 4x the evaluations of DPS).  A thin call
of ``dmap bench`` (the five paper tasks, ``--images`` test digits, the shipped presets)
into ``benchmarks/results/protocols/<protocol>-sigma<sigma_y>-<budgets>/`` (resumable; with
``--refresh``: cells whose presets or adapters changed are solved again, new methods added).
"""

from __future__ import annotations

import argparse
import json

from common import PAPER_TASKS, RESULTS, bench

OUT = RESULTS / "protocols"


def folder(protocol: str, sigma_y: float, budgets: str):
    return OUT / f"{protocol}-sigma{sigma_y:g}-{budgets.replace(',', '_')}"


def run(args) -> None:
    out = folder(args.protocol, args.sigma_y, args.budgets)
    bench(
        args.prior,
        PAPER_TASKS,
        args.methods.split(","),
        out,
        images=args.images,
        nfe=args.budgets,
        protocol=args.protocol,
        sigma_y=args.sigma_y,
        threads=None,
        workers=args.workers,
    )


def paired(cell: dict, base: dict) -> str:
    """``cell - base`` per image, mean ± standard error (or which of them diverged)."""
    import numpy as np

    bad = [f"{c['method'].split('[')[0]} diverged on {c['diverged']}/{c['n_images']}" for c in (base, cell) if c.get("diverged")]
    if bad:
        return "; ".join(bad)
    d = np.subtract(cell["psnr_per_image"], base["psnr_per_image"])
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / len(d) ** 0.5:.2f}"


def table() -> str:
    """One Markdown row per (protocol, sigma_y, budget, task): DPS's PSNR and each other
    method's paired difference to DPS (its NFE in brackets)."""
    lines = []
    for path in sorted(OUT.glob("*/summary.json")):
        cells = json.loads(path.read_text())
        config = json.loads((path.parent / "manifest.json").read_text())["config"]
        methods = [m for m in config["methods"] if m != "dps"]
        if not lines or lines[0] != header(methods):
            lines += [header(methods), "|---" * (5 + len(methods)) + "|"]
        for budget in config["nfe"]:
            for task in config["tasks"]:
                row = {c["method"]: c for c in cells if (c["task"], c["nfe_budget"]) == (task, budget)}
                if "dps" not in row:
                    continue
                base = row["dps"]
                rest = [f"{paired(row[m], base)} ({row[m]['nfe']})" if m in row else "-" for m in methods]
                dps = f"{base['psnr_mean']:.2f} ± {base['psnr_se']:.2f} ({base['nfe']})"
                lines.append(
                    f"| {config['protocol']} | {config['sigma_y']:g} | {budget} | {task} | {dps} | " + " | ".join(rest) + " |"
                )
    return "\n".join(lines) + "\n"


def budget_table(path) -> str:
    """From one equal-nfe folder with two budgets: each method's PSNR at the smaller and
    the larger budget and the paired difference (small - large), per task."""
    cells = json.loads((path / "summary.json").read_text())
    config = json.loads((path / "manifest.json").read_text())["config"]
    low, high = sorted(config["nfe"])[:2]
    lines = [f"| task | method | PSNR @ {low} | PSNR @ {high} | {low} − {high} (paired) |", "|---|---|---|---|---|"]
    for task in config["tasks"]:
        for method in config["methods"]:
            a, b = ([c for c in cells if (c["task"], c["method"], c["nfe_budget"]) == (task, method, n)] for n in (low, high))
            if a and b:
                lines.append(f"| {task} | {method} | {a[0]['psnr_mean']:.2f} | {b[0]['psnr_mean']:.2f} | {paired(a[0], b[0])} |")
    return "\n".join(lines) + "\n"


def header(methods: list[str]) -> str:
    return "| protocol | sigma_y | budget | task | DPS dB (NFE) | " + " | ".join(f"{m} − DPS (NFE)" for m in methods) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist")
    ap.add_argument("--protocol", choices=["equal-nfe", "equal-steps"], default="equal-nfe")
    ap.add_argument("--budgets", default="100,1000", help="NFE (equal-nfe) or steps (equal-steps)")
    ap.add_argument("--sigma-y", type=float, default=0.05)
    ap.add_argument("--methods", default="dps,dmap")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="print the table of every folder run and stop")
    args = ap.parse_args()
    if not args.table:
        run(args)
    print(table(), end="")
    for path in sorted(OUT.glob("equal-nfe-*/summary.json")):
        print(f"\n{path.parent.name}:\n\n" + budget_table(path.parent), end="")


if __name__ == "__main__":
    main()
