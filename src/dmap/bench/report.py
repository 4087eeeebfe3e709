"""The benchmark report: statistics per cell, ``summary.json`` / ``.md`` / ``.csv``,
plots and image grids."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

SUMMARY_FIELDS = [
    "task",
    "method",
    "prior",
    "n_images",
    "nfe_budget",
    "steps",
    "nfe",
    "preset",
    "psnr_mean",
    "psnr_se",
    "diverged",
    "ssim_mean",
    "seconds_per_image",
    "peak_mem_mb",
    "lpips_alex_mean",
    "lpips_vgg_mean",
    "fid",
    "kid",
    "set_images",
]
LPIPS_KEYS = ("lpips_alex", "lpips_vgg")


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0)


def by_image(rows: list[dict], key: str) -> list[list[float]]:
    """``key`` of each image's rows (its draws), images by position."""
    found: dict[int, list[float]] = {}
    for r in rows:
        found.setdefault(r["index"], []).append(r.get(key, math.nan))
    return [v for _, v in sorted(found.items())]


def per_image(rows: list[dict], key: str) -> list[float]:
    """``key`` of each image, averaged over its draws: the unit the standard errors count,
    since the draws of one image are not independent of each other."""
    return [float(np.mean(v)) for v in by_image(rows, key)]


def paired(a: list[float], b: list[float], resamples: int = 2000) -> dict:
    """The paired differences ``a - b`` over images: mean, standard error, a bootstrap 95 %
    interval of the mean (images resampled, seeded) and the median."""
    d = np.subtract(a, b)
    mean, se = mean_se(d)
    means = d[np.random.default_rng(0).integers(0, len(d), (resamples, len(d)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": mean, "se": se, "ci95": [float(lo), float(hi)], "median": float(np.median(d))}


def cells(rows: list[dict], config, manifest: dict) -> list[dict]:
    """``summary.json``: one cell per (task, method, nfe) of ``config`` (a
    :class:`~dmap.bench.specs.BenchConfig`) with its statistics over images (each image's
    scores averaged over its ``draws`` first); ``diverged`` counts the solves that diverged
    (their PSNR is NaN, and so is the cell's mean)."""
    cell_of = {(c["task"], c["method"], c["nfe_budget"]): c for c in manifest["cells"]}
    result = []
    for t in config.tasks:
        for m in config.methods:
            for n in config.nfe:
                sel = [r for r in rows if (r["task"], r["method"], r["nfe_budget"]) == (t, m, n)]
                if not sel:
                    continue
                psnr = per_image(sel, "psnr")
                p_mean, p_se = mean_se(psnr)
                ok = [r for r in sel if "diverged" not in r]
                result.append(
                    {
                        "task": t,
                        "method": m,
                        "prior": config.prior,
                        "n_images": len(psnr),
                        "nfe_budget": n,
                        "steps": cell_of[(t, m, n)]["options"]["steps"],
                        "nfe": cell_of[(t, m, n)]["nfe"],
                        "preset": cell_of[(t, m, n)].get("preset"),
                        "psnr_mean": p_mean,
                        "psnr_se": p_se,
                        "diverged": sum("diverged" in r for r in sel),
                        "ssim_mean": float(np.mean([r["ssim"] for r in sel])),
                        "seconds_per_image": float(np.mean([r["seconds"] for r in ok])) if ok else math.nan,
                        "peak_mem_mb": float(max(r["peak_mem_mb"] for r in ok)) if ok else math.nan,
                        "psnr_per_image": psnr,
                        **({"draws": config.draws, "psnr_draw_sd": _draw_sd(sel)} if config.draws > 1 else {}),
                        **_of_mean(sel),
                        **_lpips(sel),
                    }
                )
    return result


def _draw_sd(rows: list[dict]) -> float:
    """The spread of an image's PSNR over operator draws and seeds, averaged over images."""
    return float(np.mean([np.std(v, ddof=1) for v in by_image(rows, "psnr")]))


def _of_mean(rows: list[dict]) -> dict:
    """With several samples per image: the PSNR of each image's sample mean, mean and SE."""
    if not rows or "psnr_of_mean" not in rows[0]:
        return {}
    m, se = mean_se(per_image(rows, "psnr_of_mean"))
    return {"psnr_of_mean_mean": m, "psnr_of_mean_se": se}


def _lpips(rows: list[dict]) -> dict:
    """With ``--metric-weights``: each LPIPS's mean and SE (NaN where an image diverged)."""
    out = {}
    for key in LPIPS_KEYS:
        if key in rows[0] or any(key in r for r in rows):
            out[f"{key}_mean"], out[f"{key}_se"] = mean_se(per_image(rows, key))
    return out


def _num(v: float, fmt: str) -> str:
    return format(v, fmt) if math.isfinite(v) else "-"


PERCEPTUAL = {"lpips_alex": "LPIPS-alex", "lpips_vgg": "LPIPS-vgg", "fid": "FID", "kid": "KID"}


def _perceptual(cell: dict, key: str) -> str:
    """LPIPS mean +- SE, or FID / KID of the cell's set (``-`` where absent)."""
    if f"{key}_mean" in cell:
        return f"{_num(cell[f'{key}_mean'], '.4f')} ± {cell[f'{key}_se']:.4f}"
    return _num(cell.get(key, math.nan), ".4g")


def markdown(summary: list[dict], baseline: str | None = None) -> str:
    """Per cell: its budget (evaluations, or steps under equal steps) and the steps and
    evaluations it ran (fewer where its preset caps the budget), PSNR mean +- standard
    error, the paired difference to ``baseline`` (default: the first method) on the same
    images (mean +- SE, bootstrap 95 % interval, median), SSIM, seconds per image and peak
    memory."""
    baseline = baseline or (summary[0]["method"] if summary else None)
    extra = [(k, name) for k, name in PERCEPTUAL.items() if any(k in c or f"{k}_mean" in c for c in summary)]
    head = (
        f"| task | method | budget | steps | NFE | PSNR (dB) | Δ vs {baseline} (paired, dB) | SSIM |"
        + "".join(f" {name} |" for _, name in extra)
        + " s / image | peak MB |\n"
        + "|---" * (10 + len(extra))
        + "|\n"
    )
    lines = []
    for c in summary:
        base = next(
            (b for b in summary if (b["task"], b["method"], b["nfe_budget"]) == (c["task"], baseline, c["nfe_budget"])), None
        )
        diverged = c.get("diverged") or (base or {}).get("diverged")
        if base is None or c["method"] == baseline or base["n_images"] != c["n_images"] or diverged:
            delta = "-"
        else:
            d = paired(c["psnr_per_image"], base["psnr_per_image"])
            lo, hi = d["ci95"]
            delta = f"{d['mean']:+.2f} ± {d['se']:.2f} [{lo:+.2f}, {hi:+.2f}], median {d['median']:+.2f}"
        sec, mem = c["seconds_per_image"], c["peak_mem_mb"]
        score = f"{c['psnr_mean']:.2f} ± {c['psnr_se']:.2f}"
        if "psnr_of_mean_mean" in c:
            score += f" (their mean {c['psnr_of_mean_mean']:.2f} ± {c['psnr_of_mean_se']:.2f})"
        if c.get("diverged"):
            score = f"diverged on {c['diverged']}/{c['n_images']}"
        lines.append(
            f"| {c['task']} | {c['method']} | {c['nfe_budget']} | {c['steps']} | {c['nfe']} | {score} | "
            f"{delta} | {c['ssim_mean']:.3f} |"
            + "".join(f" {_perceptual(c, k)} |" for k, _ in extra)
            + f" {_num(sec, '.3f')} | {_num(mem, '.0f')} |"
        )
    return head + "\n".join(lines) + "\n"


def write_report(bench, rows: list[dict], summary: list[dict]) -> list[Path]:
    """Write every report file of ``bench`` (anything with ``out``, ``config``, ``x`` and
    ``task(name)``, i.e. a :class:`dmap.bench.runner.Bench`) into its folder; returns
    their paths."""
    out, config = bench.out, bench.config
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(
        f"prior {config.prior}, {_images(config)}, sigma_y = {config.sigma_y}, "
        f"protocol {config.protocol}, seed {config.seed}"
        + (f", {config.draws} draws of operator, noise and seed per image (averaged per image first)" if config.draws > 1 else "")
        + " (manifest.json has every setting)"
        + ("; FID and KID: each cell's restorations against their truths" if "fid" in config.metrics else "")
        + _other_regime(summary)
        + "\n\n"
        + markdown(summary)
    )
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(summary)
    written = [out / "summary.json", out / "summary.md", out / "summary.csv"]
    return written + _plots(out, config, summary) + _grids(bench, out, config)


def _other_regime(summary: list[dict]) -> str:
    """The note naming the methods that ran with a preset of the other noise regime."""
    methods = sorted({c["method"] for c in summary if "none for" in (c.get("preset") or "")})
    return f"; **{', '.join(methods)}: presets of the other noise regime** (none tuned for this one)" if methods else ""


def _images(config) -> str:
    return f"the first {config.images} images of {config.data}" if config.data else f"{config.images} {config.split} digits"


def _plots(out: Path, config, summary: list[dict]) -> list[Path]:
    """psnr.png (bars at the largest budget) and psnr_vs_nfe_<task>.png (several budgets)."""
    from dmap.figures import bar_chart, line_plot

    top = max(config.nfe)
    groups = {t: {c["method"]: c["psnr_mean"] for c in summary if c["task"] == t and c["nfe_budget"] == top} for t in config.tasks}
    unit = "network evaluations per image" if config.protocol == "equal-nfe" else "steps"
    title = f"PSNR at {top} {unit}, prior {config.prior}, {_images(config)}"
    bar_chart(groups, out / "psnr.png", title=title, ylabel="PSNR (dB)")
    written = [out / "psnr.png"]
    if len(config.nfe) > 1:
        for t in config.tasks:
            cells = {m: [c for c in summary if (c["task"], c["method"]) == (t, m)] for m in config.methods}
            series = {m: ([c["nfe"] for c in cs], [c["psnr_mean"] for c in cs]) for m, cs in cells.items()}
            path = out / f"psnr_vs_nfe_{t}.png"
            line_plot(
                series,
                path,
                title=f"PSNR against budget, {t}, prior {config.prior}",
                xlabel="network evaluations per image (NFE)",
                ylabel="PSNR (dB)",
                log_x=True,
            )
            written.append(path)
    return written


def _grids(bench, out: Path, config) -> list[Path]:
    """grid_<task>.png: truth, measurement and each method's restorations of the first batch
    (up to 16 images)."""
    from dmap.bench.store import outputs_path
    from dmap.figures import grid

    n_show = min(16, config.images, config.batch_size)
    written = []
    for t in config.tasks:
        task, y = bench.task(t)
        columns = [("truth", bench.x[:n_show]), ("measured", task.operator.view(y[:n_show]))]
        for m in config.methods:
            p = outputs_path(out, t, m, max(config.nfe))
            if p.exists():
                columns.append((m, torch.from_numpy(np.load(p))[:n_show]))
        path = out / f"grid_{t}.png"
        grid([[col[i] for _, col in columns] for i in range(n_show)], path, col_labels=[n for n, _ in columns], cell=64)
        written.append(path)
    return written
