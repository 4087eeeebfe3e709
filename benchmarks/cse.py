"""The conditional score estimator on the shipped `mnist` prior: DPS / DMAP with and without it.

    python benchmarks/tune_presets.py --prior mnist --tasks sr4,inpaint-box,inpaint-random,deblur-aniso,cs2 \
        --methods dps,dps+cse,dmap,dmap+cse --images 8 --nfe 500 --around mnist \
        --out benchmarks/results/cse/presets-500.json --trials benchmarks/results/cse/tune
    python benchmarks/cse.py [--images 32] [--nfe 500] [--threads 1]

The first command tunes the step sizes of all four methods the same way at this budget (a
local search around the shipped presets on 8 train digits); the second runs one
`dmap bench --presets benchmarks/results/cse/presets-500.json` per paper task into
``benchmarks/results/cse/<task>/`` (resumable; a task runs once its shipped adapter
exists), methods

    dps, dps+cse, dmap, dmap+cse, cse                 the main comparison
    dps+cse[guide=cse], dmap+cse[guide=cse]           ablation (sr4, inpaint-box): the
                                                      estimator's x0_hat (instead of the
                                                      prior's) in the likelihood gradient

and, for sr4, the training-set ablation into ``benchmarks/results/cse/images-sr4/``:
dps+cse and dmap+cse with adapters trained on 10 / 100 / 1,000 / 9,001 digits
(``benchmarks/cse_train.py`` makes them).  Writes ``benchmarks/results/cse/summary.md``
and ``benchmarks/results/cse/images-sr4.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import PAPER_TASKS, RESULTS, ROOT, bench

OUT = RESULTS / "cse"
PRESETS = Path("benchmarks/results/cse/presets-500.json")  # relative: `dmap bench` runs in ROOT
ASSETS = ROOT / "src" / "dmap" / "assets" / "cse"
MAIN = ["dps", "dps+cse", "dmap", "dmap+cse", "cse"]
GUIDE = ["dps+cse[guide=cse]", "dmap+cse[guide=cse]"]
GUIDE_TASKS = ["sr4", "inpaint-box"]
# the estimators of the training-set ablation besides the shipped one (100 digits), relative to ROOT
ADAPTERS = {
    10: "runs/cse-ablation/mnist-sr4-10.safetensors",
    1000: "runs/cse-ablation/mnist-sr4-1000.safetensors",
    9001: "src/dmap/assets/cse/reference/mnist-sr4.safetensors",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--nfe", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from dmap.bench import markdown
    from dmap.figures import line_plot

    cells = []
    for task in PAPER_TASKS:
        if (ASSETS / f"mnist-{task}.safetensors").exists():
            methods = MAIN + (GUIDE if task in GUIDE_TASKS else [])
            cells += bench(
                "mnist", [task], methods, OUT / task, images=args.images, nfe=args.nfe, threads=args.threads, presets=PRESETS
            )
        else:
            print(f"{task}: no shipped adapter yet (python benchmarks/cse_train.py), skipped", flush=True)
    text = (
        f"mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per image "
        f"(an evaluation of the estimator counts one), step sizes tuned at this budget on train digits "
        f"({PRESETS.name}), {args.threads} thread(s) (`python benchmarks/cse.py`)\n\n"
    )
    text += "### Main comparison\n\n" + markdown([c for c in cells if c["method"] in MAIN])
    text += "\n### Ablation: which x0_hat feeds the likelihood gradient (paired Δ vs the prior's)\n\n"
    for base in ("dps+cse", "dmap+cse"):
        text += (
            markdown([c for c in cells if c["method"] in (base, f"{base}[guide=cse]") and c["task"] in GUIDE_TASKS], baseline=base)
            + "\n"
        )
    if "sr4" in {c["task"] for c in cells} and all((ROOT / p).exists() for p in ADAPTERS.values()):
        specs = [f"{m}[cse={p}]" for m in ("dps+cse", "dmap+cse") for p in ADAPTERS.values()]
        ablation = bench(
            "mnist", ["sr4"], specs, OUT / "images-sr4", images=args.images, nfe=args.nfe, threads=args.threads, presets=PRESETS
        )
        series = {}
        rows = ["| method | training digits | PSNR (dB) | SSIM |", "|---|---|---|---|"]
        for m in ("dps+cse", "dmap+cse"):
            shipped = next(c for c in cells if c["task"] == "sr4" and c["method"] == m)
            pts = sorted(
                [(n, next(c for c in ablation if c["method"] == f"{m}[cse={p}]")) for n, p in ADAPTERS.items()] + [(100, shipped)],
                key=lambda nc: nc[0],
            )
            series[m] = ([n for n, _ in pts], [c["psnr_mean"] for _, c in pts])
            rows += [f"| {m} | {n} | {c['psnr_mean']:.2f} ± {c['psnr_se']:.2f} | {c['ssim_mean']:.3f} |" for n, c in pts]
        for m in ("dps", "dmap"):
            flat = next(c["psnr_mean"] for c in cells if c["task"] == "sr4" and c["method"] == m)
            series[f"{m} (no estimator)"] = ([10, 9001], [flat, flat])
        line_plot(
            series,
            OUT / "images-sr4.png",
            title="sr4: PSNR against the estimator's training digits",
            xlabel="training digits of the estimator",
            ylabel="PSNR (dB)",
            log_x=True,
        )
        text += "### Ablation: training digits of the estimator (sr4)\n\n" + "\n".join(rows) + "\n"
    else:
        print("the training-set ablation needs its adapters (python benchmarks/cse_train.py) and the sr4 cells")
    (OUT / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
