"""The conditional score estimator on the shipped `mnist` prior: DPS / DMAP with and without it.

    python benchmarks/cse.py [--images 32] [--nfe 500] [--threads 1]

One `dmap bench` per paper task into ``benchmarks/results/cse/<task>/`` (resumable; a task
runs once its shipped adapter exists), methods

    dps, dps+cse, dmap, dmap+cse, cse                 the main comparison
    dps+cse[guide=cse], dmap+cse[guide=cse]           ablation: the estimator's x0_hat
                                                      (instead of the prior's) in the
                                                      likelihood gradient

and, for sr4, the training-set ablation into ``benchmarks/results/cse/images-sr4/``:
dps+cse and dmap+cse with adapters trained on 10 / 100 / 1,000 / 9,001 digits
(``benchmarks/cse_train.py`` makes them).  Writes ``benchmarks/results/cse/summary.md``
and ``benchmarks/results/cse/images-sr4.png``.
"""

from __future__ import annotations

import argparse
import math
import sys

from common import PAPER_TASKS, RESULTS, ROOT, bench

OUT = RESULTS / "cse"
ASSETS = ROOT / "src" / "dmap" / "assets" / "cse"
MAIN = ["dps", "dps+cse", "dmap", "dmap+cse", "cse"]
GUIDE = ["dps+cse[guide=cse]", "dmap+cse[guide=cse]"]
ADAPTERS = {10: ROOT / "runs" / "cse-ablation" / "mnist-sr4-10.safetensors",
            100: ASSETS / "mnist-sr4.safetensors",
            1000: ROOT / "runs" / "cse-ablation" / "mnist-sr4-1000.safetensors",
            9001: ASSETS / "reference" / "mnist-sr4.safetensors"}


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
            cells += bench("mnist", [task], MAIN + GUIDE, OUT / task, images=args.images, nfe=args.nfe,
                           threads=args.threads)
        else:
            print(f"{task}: no shipped adapter yet (python benchmarks/cse_train.py), skipped", flush=True)
    text = (f"mnist, {args.images} test digits, sigma_y = 0.05, at most {args.nfe} network evaluations per image "
            f"(an evaluation of the estimator counts one), {args.threads} thread(s) (`python benchmarks/cse.py`)\n\n")
    text += "### Main comparison\n\n" + markdown([c for c in cells if c["method"] in MAIN])
    text += "\n### Ablation: which x0_hat feeds the likelihood gradient (paired Δ vs the prior's)\n\n"
    for base in ("dps+cse", "dmap+cse"):
        text += markdown([c for c in cells if c["method"] in (base, f"{base}[guide=cse]")], baseline=base) + "\n"
    if all(p.exists() for p in ADAPTERS.values()):
        specs = [f"{m}[cse={p}]" for m in ("dps+cse", "dmap+cse") for p in ADAPTERS.values()]
        ablation = bench("mnist", ["sr4"], specs, OUT / "images-sr4", images=args.images, nfe=args.nfe,
                         threads=args.threads)
        series = {}
        rows = ["| method | training digits | PSNR (dB) | SSIM |", "|---|---|---|---|"]
        for m in ("dps+cse", "dmap+cse"):
            pts = [(n, next(c for c in ablation if c["method"] == f"{m}[cse={p}]")) for n, p in ADAPTERS.items()]
            series[m] = ([n for n, _ in pts], [c["psnr_mean"] for _, c in pts])
            rows += [f"| {m} | {n} | {c['psnr_mean']:.2f} ± {c['psnr_se']:.2f} | {c['ssim_mean']:.3f} |" for n, c in pts]
        series["dps (no estimator)"] = (list(ADAPTERS), [next(c["psnr_mean"] for c in cells if c["task"] == "sr4"
                                                               and c["method"] == "dps")] * len(ADAPTERS))
        series["dmap (no estimator)"] = (list(ADAPTERS), [next(c["psnr_mean"] for c in cells if c["task"] == "sr4"
                                                                and c["method"] == "dmap")] * len(ADAPTERS))
        line_plot({k: ([math.log10(n) for n in v[0]], v[1]) for k, v in series.items()},
                  OUT / "images-sr4.png", title="sr4: PSNR against the estimator's training digits",
                  xlabel="log10 training digits", ylabel="PSNR (dB)")
        text += "### Ablation: training digits of the estimator (sr4)\n\n" + "\n".join(rows) + "\n"
    (OUT / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
