"""``dmap fidelity``: does a method sample the posterior?  Each of ``measurements`` test
digits is measured once; each method solves that measurement ``samples`` times, and the
samples are compared with the exact posterior of the mixture prior
(:mod:`dmap.analysis.fidelity`).  Resumable: one row per (method, budget, measurement) in
``results.jsonl``; a rerun solves only what is missing (other settings are refused)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dmap.analysis.fidelity import fidelity
from dmap.api import run_method, unsuited
from dmap.config import Config
from dmap.data import mnist_spread
from dmap.metrics import psnr
from dmap.operators import make_task
from dmap.presets import resolve_options
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators, seeded

KEYS = (
    "sw2",
    "sw2_floor",
    "energy",
    "energy_floor",
    "mean_error",
    "variance_ratio",
    "coverage_50",
    "coverage_90",
    "weights_tv",
    "psnr_of_mean",
    "psnr_per_sample",
    "seconds",
)
EXACT_SAMPLES = 2000


class FidelityError(ValueError):
    """A fidelity run that cannot be done as asked."""


@dataclass(frozen=True)
class FidelityConfig(Config):
    """The settings every row of a run shares (saved in its manifest)."""

    prior: str
    task: str
    samples: int = 64
    measurements: int = 8
    sigma_y: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 2 or self.measurements < 1:
            raise FidelityError(
                f"--samples must be >= 2 (spreads need two) and --measurements >= 1, got {self.samples}, {self.measurements}"
            )


class Problem:
    """The measurements of a run and their exact posteriors (mixture, samples)."""

    def __init__(self, prior: GMMPrior, config: FidelityConfig) -> None:
        if not isinstance(prior, GMMPrior):
            raise FidelityError(f"prior {config.prior} has no closed-form posterior; use gmm-mnist (a Gaussian mixture)")
        self.task = make_task(config.task, prior.image_shape, sigma_y=config.sigma_y, generator=seeded(config.seed))
        if not self.task.operator.linear or config.sigma_y <= 0:
            raise FidelityError(
                f"the exact posterior needs a linear task and sigma_y > 0 ({config.task}, sigma_y {config.sigma_y:g})"
            )
        self.x, _ = mnist_spread(config.measurements)
        self.y = self.task.simulate(self.x, generator=[seeded(config.seed, 1, j) for j in range(len(self.x))])
        family = prior.mixture.condition(self.task.operator.matrix(), config.sigma_y)
        self.posteriors = [family.at(y.reshape(-1).double()) for y in self.y]
        self.config = config

    def exact(self, j: int, n: int, stream: int) -> Tensor:
        """``n`` exact posterior samples of measurement ``j`` (``stream`` 0, 1, 2: independent sets)."""
        g = seeded(self.config.seed, 3, j, stream)
        return self.posteriors[j].sample(n, g).float().reshape(n, *self.x.shape[1:])


def solve_row(prior, problem: Problem, method: str, nfe: int, j: int, options=None) -> tuple[dict, Tensor]:
    """One measurement solved ``samples`` times by ``method`` at ``nfe`` evaluations with its
    preset (or ``options``; ``exact``: a third exact set), its fidelity row and the samples."""
    c = problem.config
    start = time.perf_counter()
    if method == "exact":
        x = problem.exact(j, c.samples, 2)
    else:
        opts = options or resolve_options(method, prior.name, c.task, nfe=nfe)
        y = problem.y[j : j + 1].expand(c.samples, *problem.y.shape[1:]).contiguous()
        gens = sample_generators(c.seed + 2, c.samples, offset=j * c.samples)
        x = run_method(method, prior, problem.task, y, opts, generator=gens)
    seconds = (time.perf_counter() - start) / c.samples
    exact, again = problem.exact(j, EXACT_SAMPLES, 0), problem.exact(j, c.samples, 1)
    row = fidelity(x, exact, again, problem.posteriors[j], generator=seeded(c.seed, 4, j))
    truth = problem.x[j : j + 1]
    row.update(
        psnr_of_mean=float(psnr(x.mean(0, keepdim=True), truth)),
        psnr_per_sample=float(psnr(x, truth.expand_as(x)).mean()),
        seconds=seconds,
    )
    return {"method": method, "nfe": nfe, "measurement": j, **row}, x


def run_fidelity(prior, config: FidelityConfig, methods: list[str], budgets: list[int], out: Path, progress=None) -> list[dict]:
    """Solve what ``out/results.jsonl`` lacks, write the summary and figures; returns the
    summary rows (one per method and budget, means over the measurements)."""
    problem = Problem(prior, config)
    for method in methods:
        reason = method != "exact" and unsuited(method, problem.task, resolve_options(method, prior.name, config.task), prior)
        if reason:
            raise FidelityError(reason)
    _check_manifest(out, config)
    store = out / "results.jsonl"
    done = {(r["method"], r["nfe"], r["measurement"]) for r in _rows(store)}
    todo = [(m, n, j) for m in ["exact", *methods] for n in budgets for j in range(config.measurements)]
    todo = [key for key in todo if key not in done]
    for i, (method, nfe, j) in enumerate(todo):
        row, x = solve_row(prior, problem, method, nfe, j)
        with store.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if j == 0:
            np.save(out / f"std_{method.replace('+', '_')}@{nfe}.npy", x.std(0).numpy())
        if progress is not None:
            progress(i + 1, len(todo), f"{method} @{nfe} measurement {j}")
    summary = summarize(_rows(store), ["exact", *methods], budgets)
    write_report(out, config, summary, problem)
    return summary


def _rows(store: Path) -> list[dict]:
    return [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []


def _check_manifest(out: Path, config: FidelityConfig) -> None:
    path = out / "manifest.json"
    if path.exists() and json.loads(path.read_text()) != config.to_dict():
        raise FidelityError(f"{out} holds a fidelity run with other settings ({path}); give another --out")
    path.write_text(json.dumps(config.to_dict(), indent=1) + "\n")


def summarize(rows: list[dict], methods: list[str], budgets: list[int]) -> list[dict]:
    """Per (method, budget): each measure's mean over the measurements (and ``sw2_ratio``,
    the mean of SW2 / its floor)."""
    out = []
    for method in methods:
        for nfe in budgets:
            mine = [r for r in rows if (r["method"], r["nfe"]) == (method, nfe)]
            if mine:
                cell = {k: float(np.mean([r[k] for r in mine])) for k in KEYS}
                cell["sw2_ratio"] = float(np.mean([r["sw2"] / r["sw2_floor"] for r in mine]))
                out.append({"method": method, "nfe": nfe, "measurements": len(mine), **cell})
    return out


def markdown(summary: list[dict]) -> str:
    head = (
        "| method | NFE | SW2 / floor | variance ratio | coverage 50 % | coverage 90 % | mean error | weights TV "
        "| PSNR of the mean | PSNR per sample | s / sample |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {c['method']} | {c['nfe'] if c['method'] != 'exact' else '-'} | {c['sw2_ratio']:.2f} | {c['variance_ratio']:.2f} "
        f"| {c['coverage_50']:.2f} | {c['coverage_90']:.2f} | {c['mean_error']:.3f} | {c['weights_tv']:.2f} "
        f"| {c['psnr_of_mean']:.2f} | {c['psnr_per_sample']:.2f} | {c['seconds']:.3f} |"
        for c in summary
        if c["method"] != "exact" or c["nfe"] == summary[0]["nfe"]
    ]
    return head + "\n".join(lines) + "\n"


def write_report(out: Path, config: FidelityConfig, summary: list[dict], problem: Problem) -> None:
    """summary.json / .md, fidelity_vs_nfe.png (SW2 / floor and variance ratio against the
    budget) and std_maps.png (per-pixel std of each method's samples beside the exact one,
    first measurement, largest budget)."""
    from dmap.figures import grid, line_plot

    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    note = (
        f"prior {config.prior}, task {config.task}, sigma_y {config.sigma_y:g}, {config.measurements} measurements x "
        f"{config.samples} samples, against {EXACT_SAMPLES} exact posterior samples each (`exact`: a third exact set)\n\n"
    )
    (out / "summary.md").write_text(note + markdown(summary))
    methods = list(dict.fromkeys(c["method"] for c in summary if c["method"] != "exact"))
    for key, name in (("sw2_ratio", "SW2 / its floor"), ("variance_ratio", "variance ratio")):
        series = {
            m: ([c["nfe"] for c in summary if c["method"] == m], [c[key] for c in summary if c["method"] == m]) for m in methods
        }
        line_plot(
            series,
            out / f"{key}_vs_nfe.png",
            title=f"{name} against the budget, {config.task}, {config.prior}",
            xlabel="network evaluations per image (NFE)",
            ylabel=name,
            log_x=True,
        )
    top = max(c["nfe"] for c in summary)
    maps = [np.load(out / f"std_{m.replace('+', '_')}@{top}.npy") for m in ["exact", *methods]]
    scale = max(float(m.max()) for m in maps) or 1.0
    grid([[torch.from_numpy(m / scale * 2 - 1) for m in maps]], out / "std_maps.png", cell=96, col_labels=["exact", *methods])
