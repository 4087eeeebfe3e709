"""``dmap analyze``: the paper's three findings about DPS, measured on one task.

1. score error ``E ||s_method(x_t, y) - s_ref(x_t, y)||^2 / n`` per timestep over pairs
   ``(x0, y)`` of test digits with ``x_t ~ q(x_t | x0)``;
2. score mean: ``||E[s(x_t, y) | y]||`` over ``x_t ~ p_t(x_t | y)`` for one ``y``, against
   its Monte-Carlo standard error (a valid score has mean zero);
3. diversity of 16 restorations of one ``y`` per method.

The reference: for the Gaussian-mixture prior on a linear task, the exact conditional
score and exact posterior samples (:class:`ExactReference`); for a network prior, a
conditional score estimator trained on every train digit and samples of its reverse
process (:class:`NetworkReference`), a well-trained stand-in for the exact ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import dmap
from dmap.analysis.diversity import diversity
from dmap.analysis.scores import dps_score, mean_test, score_error
from dmap.api import run_method
from dmap.catalogue import find_cse, shipped_path
from dmap.cse import CSE
from dmap.operators.noise import GaussianNoise
from dmap.operators.tasks import Task
from dmap.presets import resolve_options
from dmap.priors.base import Prior
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators, seeded
from dmap.solvers.sample import sample_prior


def timesteps(T: int, n: int = 20) -> list[int]:
    """``n`` evenly spaced timesteps ``T/n - 1, 2T/n - 1, ..., T - 1`` (0-based; with
    ``T = 1000``: t = 50, 100, ..., 1000 counted from 1)."""
    return [round(T * (i + 1) / n) - 1 for i in range(n)]


class ExactReference:
    """The exact posterior of a Gaussian-mixture prior given each ``y`` of a batch."""

    name = "exact posterior"

    def __init__(self, prior: GMMPrior, task: Task, y: Tensor) -> None:
        family = prior.mixture.condition(task.operator.matrix(), task.sigma_y)
        self.posts = [family.at(y[i].reshape(-1).double()) for i in range(len(y))]
        self.schedule, self.shape = prior.schedule, prior.shape
        self.posterior_mean = self.posts[0].mean()

    def score(self, x_t: Tensor, t: int, index: list[int]) -> Tensor:
        """``grad log p_t(x_t | y_i)`` for row ``k`` of ``x_t`` with ``i = index[k]``."""
        ab = self.schedule.ab(t, x_t[:1]).double()
        flat = x_t.reshape(len(x_t), -1).double()
        out = torch.empty_like(flat)
        rows = torch.tensor(index)
        for i in sorted(set(index)):  # one call per posterior
            out[rows == i] = self.posts[i].score(flat[rows == i], ab)
        return out.float().reshape(x_t.shape)

    def posterior(self, n: int, seed: int) -> Tensor:
        """``n`` samples of ``p(x0 | y_0)``."""
        return self.posts[0].sample(n, seeded(seed, 3)).float().reshape(n, *self.shape)


class NetworkReference:
    """A conditional score estimator trained on every train digit, standing in for the
    exact conditional score; its reverse process (``steps`` steps) for the posterior."""

    name = "reference cse"
    posterior_mean = None

    def __init__(self, cse: CSE, task: Task, y: Tensor, steps: int = 250) -> None:
        self.cse, self.task, self.y, self.steps = cse, task, y, steps
        self.cond = cse.condition(task.operator, y)

    def score(self, x_t: Tensor, t: int, index: list[int]) -> Tensor:
        with torch.no_grad():
            eps = self.cse.eps(x_t, torch.tensor(t), self.cond[index])
        return self.cse.prior.schedule.eps_to_score(eps, t)

    def posterior(self, n: int, seed: int) -> Tensor:
        y0 = self.y[:1].expand(n, *self.y.shape[1:]).contiguous()
        conditioned = self.cse.conditioned(self.task.operator, y0)
        return sample_prior(conditioned, n, steps=self.steps, generator=sample_generators(seed + 3, n))


def reference_for(prior: Prior, task: Task, y: Tensor) -> ExactReference | NetworkReference | None:
    """The exact reference (mixture prior, linear task), the shipped reference estimator
    (network prior), or None."""
    if not task.operator.linear or not isinstance(task.noise, GaussianNoise):
        return None
    if isinstance(prior, GMMPrior):
        return ExactReference(prior, task, y)
    if shipped_path(prior, task.name, reference=True, sigma_y=task.sigma_y):
        return NetworkReference(find_cse(prior, task.name, reference=True, sigma_y=task.sigma_y), task, y)
    return None


def analyze(
    prior: Prior,
    task: Task,
    x: Tensor,
    y: Tensor,
    *,
    methods: tuple[str, ...] | None = None,
    n_mean: int = 128,
    n_samples: int = 16,
    nfe: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    cse: CSE | None = None,
    reference: ExactReference | NetworkReference | None = None,
) -> tuple[dict, dict[str, Tensor]]:
    """Run the three diagnostics for the pairs ``(x [N, C, H, W], y)``; the score mean and
    the diversity use the first pair, each method with its preset at ``nfe`` evaluations
    (default methods: dps, dsg, dmap, and cse, dps+cse when there is an estimator).
    ``cse`` and ``reference`` default to the shipped estimator and :func:`reference_for`.
    Returns every number (JSON-ready) and the samples per method."""
    say = progress or (lambda _: None)
    op = task.operator
    if cse is None and op.linear and shipped_path(prior, task.name, sigma_y=task.sigma_y):
        cse = find_cse(prior, task.name, sigma_y=task.sigma_y)
    if methods is None:
        methods = ("dps", "dsg", "dmap") + (("cse", "dps+cse") if cse is not None else ())
    ref = reference or reference_for(prior, task, y)
    dps = resolve_options("dps", prior.name, task.name, nfe=nfe)  # the DPS run analysed
    stride = max(1, prior.schedule.T // dps.steps)
    ts = timesteps(prior.schedule.T)
    out: dict = {
        "prior": prior.name,
        "task": task.name,
        "sigma_y": task.sigma_y,
        "pairs": len(x),
        "seed": seed,
        "nfe": nfe,
        "dps_step_size": dps.step_size,
        "timesteps": [t + 1 for t in ts],
        "reference": None if ref is None else ref.name,
        "exact_reference": isinstance(ref, ExactReference),
    }
    samples: dict[str, Tensor] = {}

    def estimates(xt: Tensor, t: int, yb: Tensor) -> dict[str, Tensor]:
        t_prev = max(t - stride, -1)  # the step of the DPS run at t
        est = {
            "unconditional": prior.score(xt, t).detach(),
            "dps": dps_score(prior, op, yb, xt, t, t_prev, dps.zeta(t, t_prev)).detach(),
        }
        if cse is not None:
            with torch.no_grad():
                est["cse"] = cse.conditioned(op, yb).score(xt, t)
        return est

    if ref is not None:
        say(f"{n_mean} samples of the reference posterior")
        x0_ref = ref.posterior(n_mean, seed)
        out["score_error"], out["score_mean"] = _score_diagnostics(prior, ref, estimates, x, y, x0_ref, ts, seed, say)
        samples[ref.name] = x0_ref[:n_samples]
    for method in methods:
        say(f"{n_samples} samples of {method}")
        samples[method] = _method_samples(prior, task, y[:1], method, n_samples, nfe, seed, cse)
    post_mean = None if ref is None else ref.posterior_mean
    out["diversity"] = {name: diversity(s.clamp(-1, 1), truth=x[:1], posterior_mean=post_mean) for name, s in samples.items()}
    return out, samples


def _method_samples(prior: Prior, task: Task, y: Tensor, method: str, n: int, nfe: int, seed: int, cse) -> Tensor:
    """``n`` restorations of the one measurement ``y [1, ...]`` by ``method`` with its preset at ``nfe``."""
    opts = resolve_options(method, prior.name, task.name, nfe=nfe)
    y0 = y.expand(n, *y.shape[1:]).contiguous()
    return run_method(
        method, prior, task, y0, opts, generator=sample_generators(seed, n), cse=cse if dmap.METHODS[method].uses_cse else None
    )


def _score_diagnostics(
    prior: Prior, ref, estimates, x: Tensor, y: Tensor, x0_ref: Tensor, ts: list[int], seed: int, say: Callable[[str], None]
) -> tuple[dict, dict]:
    """Finding 1 (score error of each estimate against ``ref`` over the pairs) and
    finding 2 (mean of each score under ``p_t(x_t | y_0)``, from ``x0_ref``) per timestep."""
    errors: dict[str, list] = {}
    means: dict[str, list] = {}
    n_mean = len(x0_ref)
    for t in ts:
        say(f"scores at t={t + 1}")
        xt = prior.schedule.q_sample(x, t, torch.randn(x.shape, generator=seeded(seed, 1, t)))
        s_ref = ref.score(xt, t, list(range(len(x))))
        for name, s in estimates(xt, t, y).items():
            err = score_error(s, s_ref)
            se = float(err.std() / len(err) ** 0.5) if len(err) > 1 else 0.0
            errors.setdefault(name, []).append({"mean": float(err.mean()), "se": se})
        xt0 = prior.schedule.q_sample(x0_ref, t, torch.randn(x0_ref.shape, generator=seeded(seed, 2, t)))
        ests = {"reference": ref.score(xt0, t, [0] * n_mean), **estimates(xt0, t, y[:1].expand(n_mean, *y.shape[1:]))}
        for name, s in ests.items():
            means.setdefault(name, []).append(mean_test(s))
    return errors, means


def analysis_figures(result: dict, samples: dict[str, Tensor], truth: Tensor, measurement: Tensor, out) -> None:
    """score_error.png, score_mean.png, diversity.png and samples.png in the folder ``out``."""
    from pathlib import Path

    from dmap.figures import bar_chart, grid, line_plot

    out = Path(out)
    ts = result["timesteps"]
    if "score_error" in result:
        line_plot(
            {k: (ts, [e["mean"] for e in v]) for k, v in result["score_error"].items()},
            out / "score_error.png",
            title=f"Score error against the {result['reference']}, {result['task']}, prior {result['prior']}",
            xlabel="timestep t (of 1..T)",
            ylabel="mean squared error per pixel ||s - s*||² / n",
            log_y=True,
        )
        series = {k: (ts, [m["norm"] for m in v]) for k, v in result["score_mean"].items()}
        series["MC error"] = (ts, [m["se"] for m in result["score_mean"]["reference"]])
        line_plot(
            series,
            out / "score_mean.png",
            title=f"Norm of the mean score under p_t(x_t | y) (0 for a valid score), {result['task']}",
            xlabel="timestep t (of 1..T)",
            ylabel="||E[s(x_t, y)]||",
            log_y=True,
        )
    bar_chart(
        {k: v["pixel_std"] for k, v in result["diversity"].items()},
        out / "diversity.png",
        title=f"Diversity of {len(next(iter(samples.values())))} restorations of one y, {result['task']}",
        ylabel="mean per-pixel std ([-1, 1] units)",
    )
    rows = [[truth, measurement]] + [list(s) for s in samples.values()]
    grid(rows, out / "samples.png", row_labels=["truth, y"] + list(samples), cell=40, pad=1)
