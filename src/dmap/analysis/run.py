"""``dmap analyze``: the paper's three findings about DPS, measured on one task.

1. score error ``E ||s_method(x_t, y) - s_ref(x_t, y)||^2 / n`` per timestep over pairs
   ``(x0, y)`` of test digits with ``x_t ~ q(x_t | x0)``;
2. score mean: ``||E[s(x_t, y) | y]||`` over ``x_t ~ p_t(x_t | y)`` for one ``y``, against
   its Monte-Carlo standard error (a valid score has mean zero);
3. diversity of 16 restorations of one ``y`` per method.

The reference (exact conditional score, exact samples of ``p_t(x_t | y)``, exact
posterior samples) exists for the Gaussian-mixture prior on linear tasks; for other
priors only the diversity part runs (a trained conditional reference is future work).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import dmap
from dmap.analysis.diversity import diversity
from dmap.analysis.scores import dps_score, exact_posterior_xt, mean_test, score_error
from dmap.operators.tasks import Task
from dmap.priors.base import Prior
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators, seeded
from dmap.solvers import METHODS, resolve_options

TIMESTEPS = list(range(49, 1000, 50))  # t = 50, 100, ..., 1000 counted from 1


def analyze(
    prior: Prior, task: Task, x: Tensor, y: Tensor, *, methods: tuple[str, ...] = ("dps", "dsg", "dmap"),
    n_mean: int = 256, n_samples: int = 16, nfe: int = 1000, seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, dict[str, Tensor]]:
    """Run the three diagnostics for the pairs ``(x [N, C, H, W], y)``; the score mean and
    the diversity use the first pair, each method with its preset at ``nfe`` evaluations.  Returns every number (JSON-ready) and the samples
    per method."""
    say = progress or (lambda _: None)
    op = task.operator
    exact = isinstance(prior, GMMPrior) and op.linear
    zeta = resolve_options("dps", prior.name, task.name)["step_size"]
    stride = prior.schedule.T // resolve_options("dps", prior.name, task.name)["steps"]
    out: dict = {"prior": prior.name, "task": task.name, "sigma_y": task.sigma_y, "pairs": len(x), "seed": seed, "nfe": nfe,
                 "dps_step_size": zeta, "timesteps": [t + 1 for t in TIMESTEPS], "exact_reference": exact}
    samples: dict[str, Tensor] = {}

    def estimates(xt: Tensor, t: int, yb: Tensor) -> dict[str, Tensor]:
        return {"unconditional": prior.score(xt, t).detach(),
                "dps": dps_score(prior, op, yb, xt, t, max(t - stride, -1), zeta).detach()}

    if exact:
        say("exact posteriors")
        family = prior.mixture.condition(op.matrix(), task.sigma_y)
        posts = [family.at(y[i].reshape(-1).double()) for i in range(len(x))]
        errors: dict[str, list] = {"unconditional": [], "dps": []}
        means: dict[str, list] = {"exact": [], "unconditional": [], "dps": []}
        for t in TIMESTEPS:
            say(f"scores at t={t + 1}")
            e = torch.randn(x.shape, generator=seeded(seed, 1, t))
            xt = prior.schedule.q_sample(x, t, e)
            ref = torch.cat([posts[i].score(xt[i : i + 1].reshape(1, -1).double(), prior.schedule.ab(t, xt[:1]).double())
                             for i in range(len(x))]).float().reshape(x.shape)
            for name, s in estimates(xt, t, y).items():
                err = score_error(s, ref)
                errors[name].append({"mean": float(err.mean()), "se": float(err.std() / len(err) ** 0.5)})
            xt0 = exact_posterior_xt(posts[0], prior.schedule, t, n_mean, seeded(seed, 2, t)).float().reshape(n_mean, *x.shape[1:])
            y0 = y[:1].expand(n_mean, *y.shape[1:])
            ests = estimates(xt0, t, y0)
            ests["exact"] = posts[0].score(xt0.reshape(n_mean, -1).double(), prior.schedule.ab(t, xt0[:1]).double())
            for name, s in ests.items():
                means[name].append(mean_test(s))
        out["score_error"] = errors
        out["score_mean"] = means
        samples["exact posterior"] = posts[0].sample(n_samples, seeded(seed, 3)).float().reshape(n_samples, *x.shape[1:])
    for method in methods:
        say(f"{n_samples} samples of {method}")
        y0 = y[:1].expand(n_samples, *y.shape[1:]).contiguous()
        opts = resolve_options(method, prior.name, task.name)
        opts["steps"] = METHODS[method].steps_for(nfe, opts)
        samples[method] = dmap.solve(method, prior, task, y0, generator=sample_generators(seed, n_samples), **opts)
    post_mean = posts[0].mean() if exact else None
    out["diversity"] = {name: diversity(s.clamp(-1, 1), truth=x[:1], posterior_mean=post_mean)
                        for name, s in samples.items()}
    return out, samples


def analysis_figures(result: dict, samples: dict[str, Tensor], truth: Tensor, measurement: Tensor, out) -> None:
    """score_error.png, score_mean.png, diversity.png and samples.png in the folder ``out``."""
    from pathlib import Path

    from dmap.figures import bar_chart, grid, line_plot

    out = Path(out)
    ts = result["timesteps"]
    if "score_error" in result:
        line_plot({k: (ts, [e["mean"] for e in v]) for k, v in result["score_error"].items()},
                  out / "score_error.png", title=f"score error vs exact, {result['task']}", xlabel="t",
                  ylabel="||s - s*||^2 / n", log_y=True)
        series = {k: (ts, [m["norm"] for m in v]) for k, v in result["score_mean"].items()}
        series["MC error"] = (ts, [m["se"] for m in result["score_mean"]["exact"]])
        line_plot(series, out / "score_mean.png", title=f"||mean score|| under p_t(x_t | y), {result['task']}",
                  xlabel="t", ylabel="norm", log_y=True)
    bar_chart({k: v["pixel_std"] for k, v in result["diversity"].items()}, out / "diversity.png",
              title=f"diversity of {len(next(iter(samples.values())))} restorations, {result['task']}",
              ylabel="mean per-pixel std")
    rows = [[truth, measurement]] + [list(s) for s in samples.values()]
    grid(rows, out / "samples.png", row_labels=["truth, y"] + list(samples), cell=40, pad=1)
