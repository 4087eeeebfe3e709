"""DPS, DSG, DMAP and the CSE methods on a latent prior (the paper's own setting: the
likelihood through the decoder, the estimator a ControlNet), side by side with the pixel
`mnist` prior.

    python benchmarks/latent_tasks.py [--prior mnist-latent] [--images 64] [--sigma-y 0.05,0]
        [--runs equal-nfe:100/equal-steps:250] [--adapters runs/latent-cse] [--workers 1]
        [--sides latent,pixel]
    python benchmarks/latent_tasks.py --table

The prior is the shipped `mnist-latent` (or a folder from `dmap train --latent`, whose
presets `python benchmarks/tune_presets.py --prior FOLDER` stores under the folder's name).

1. Adapters: a ControlNet per (task, sigma_y) from 100 train digits (`dmap train-cse`
   into ``ADAPTERS/<task>-sigma<s>/``; one already there is kept); ``--adapters-only`` makes
   them and stops (`python benchmarks/latent_tasks.py --adapters-only`: the ten adapters
   behind the latent CSE columns; training is seeded: init, batches, masks and noise).
2. A `dmap bench` per (protocol, sigma_y, task) into
   ``benchmarks/results/latent_tasks/<protocol>-sigma<s>-<budgets>/<task>/`` (resumable,
   ``--refresh``): dps, dsg, dmap, cse, dps+cse, dmap+cse (DMAP with K = 3 under equal steps).
3. The pixel side: `benchmarks/protocols.py` runs dps, dmap and their CSE variants on
   `mnist`; the methods it leaves out (dsg, cse with the shipped adapters) run here into
   ``benchmarks/results/latent_tasks/pixel/<protocol>-sigma<s>-<budgets>/``, the same test
   digits and measurements.
4. The table (``benchmarks/results/latent_tasks/table.md``): per (protocol, sigma_y,
   budget, task) DPS's PSNR and each method's paired difference to it, on the latent prior
   and, where the pixel runs measured the same protocol, sigma_y and budget, on the pixel
   prior.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import PAPER_TASKS, RESULTS, ROOT, bench, dmap_cli
from protocols import paired

OUT = RESULTS / "latent_tasks"
METHODS = ("dps", "dsg", "dmap", "cse", "dps+cse", "dmap+cse")


def adapter(args, task: str, sigma_y: float) -> Path:
    path = Path(args.adapters) / f"{task}-sigma{sigma_y:g}"
    if not (path / "dmap_cse.json").exists():
        dmap_cli(
            "train-cse",
            "--prior",
            args.prior,
            "--task",
            task,
            "--sigma-y",
            str(sigma_y),
            "--images",
            "100",
            "--steps",
            str(args.adapter_steps),
            "--out",
            str(path),
        )
    return path


def folder(protocol: str, budgets: str, sigma_y: float) -> str:
    return f"{protocol}-sigma{sigma_y:g}-{budgets.replace(',', '_')}"


def run_bench(args, prior: str, tasks: str, methods: list[str], protocol: str, budgets: str, sigma_y: float, out: Path) -> None:
    bench(
        prior,
        tasks.split(","),
        methods,
        out,
        images=args.images,
        nfe=budgets,
        protocol=protocol,
        sigma_y=sigma_y,
        threads=None,
        workers=args.workers,
    )


def run(args, protocol: str, budgets: str, sigma_y: float, task: str) -> None:
    cse = adapter(args, task, sigma_y)
    methods = [f"{m}[cse={cse}]" if "cse" in m else m for m in METHODS]
    run_bench(args, args.prior, task, methods, protocol, budgets, sigma_y, OUT / folder(protocol, budgets, sigma_y) / task)


def run_pixel(args, protocol: str, budgets: str, sigma_y: float) -> None:
    """dsg and cse on the pixel `mnist` prior (the rest of its row is `protocols.py`'s)."""
    run_bench(
        args, "mnist", args.tasks, ["dsg", "cse"], protocol, budgets, sigma_y, OUT / "pixel" / folder(protocol, budgets, sigma_y)
    )


def short(method: str) -> str:
    return method.split("[")[0]


def table() -> str:
    """Markdown: DPS and each method's paired difference to DPS, latent (and pixel) prior."""
    head = "| protocol | sigma_y | budget | task | prior | DPS (dB) | " + " | ".join(m for m in METHODS[1:]) + " |"
    lines = [head, "|---" * (6 + len(METHODS) - 1) + "|"]
    order = {t: i for i, t in enumerate(PAPER_TASKS)}
    found = [p for p in OUT.glob("*/*/summary.json") if p.parts[-3] != "pixel"]
    for summary in sorted(found, key=lambda p: (p.parts[-3], order.get(p.parts[-2], len(order)), p.parts[-2])):
        config = json.loads((summary.parent / "manifest.json").read_text())["config"]
        runs = f"{config['protocol']}-sigma{config['sigma_y']:g}-*/summary.json"
        pixel = sorted((RESULTS / "protocols").glob(runs)) + sorted((OUT / "pixel").glob(runs))
        sources = [("latent", json.loads(summary.read_text())), ("pixel", [c for p in pixel for c in json.loads(p.read_text())])]
        for budget in config["nfe"]:
            for name, cells in sources:
                row = {short(c["method"]): c for c in cells if (c["task"], c["nfe_budget"]) == (config["tasks"][0], budget)}
                if "dps" not in row:
                    continue
                rest = [paired(row[m], row["dps"]) if m in row else "-" for m in METHODS[1:]]
                dps = f"{row['dps']['psnr_mean']:.2f} ± {row['dps']['psnr_se']:.2f}"
                lines.append(
                    f"| {config['protocol']} | {config['sigma_y']:g} | {budget} | {config['tasks'][0]} | {name} | {dps} | "
                    + " | ".join(rest)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="mnist-latent", help="the latent prior (mnist-latent or a folder)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--sigma-y", default="0.05,0")
    ap.add_argument("--runs", default="equal-nfe:100/equal-steps:250", help="protocol:budgets, separated by /")
    ap.add_argument("--tasks", default=",".join(PAPER_TASKS))
    ap.add_argument("--adapters", default=str(ROOT / "runs" / "latent-cse"))
    ap.add_argument("--adapter-steps", type=int, default=1500, help="training steps of each ControlNet (1500)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sides", default="latent,pixel", help="what to run: latent (adapters, benches), pixel (dsg, cse)")
    ap.add_argument("--table", action="store_true", help="only write and print the table")
    ap.add_argument(
        "--adapters-only", action="store_true", help="only train the ControlNet adapters (one per task and sigma_y) into --adapters"
    )
    args = ap.parse_args()
    if args.adapters_only:
        for path in [adapter(args, t, float(s)) for s in args.sigma_y.split(",") for t in args.tasks.split(",")]:
            print(path)
        return
    if not args.table:
        for spec in args.runs.split("/"):
            protocol, budgets = spec.split(":")
            for sigma_y in map(float, args.sigma_y.split(",")):
                if "pixel" in args.sides:
                    run_pixel(args, protocol, budgets, sigma_y)
                for task in args.tasks.split(",") if "latent" in args.sides else []:
                    run(args, protocol, budgets, sigma_y, task)
    text = table()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.md").write_text(f"latent prior {args.prior}, test digits (`python benchmarks/latent_tasks.py`)\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
