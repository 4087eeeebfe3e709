"""``dmap analyze`` (the paper's diagnostics of DPS) and ``dmap fidelity`` (does a method
sample the posterior? against the exact one)."""

from __future__ import annotations

import json
import sys

import dmap
from dmap.cli.common import (
    DATA_HELP,
    OutputFolder,
    UsageError,
    add_prior,
    add_threads,
    budget_list,
    check_names,
    image_set_or_usage,
    load_prior_or_usage,
    positive_float,
    positive_int,
    progress_bar,
)
from dmap.data import mnist_spread
from dmap.operators import DEFAULT_SIGMA_Y
from dmap.rng import seeded
from dmap.solvers import METHODS


def add_parsers(sub) -> None:
    a = sub.add_parser(
        "analyze",
        help="measure the paper's findings about DPS: score error, score mean, diversity",
        description="For test digits and their measurements: the error of the unconditional score, "
        "of DPS's implied conditional score and of the conditional score estimator (network priors) "
        "against a reference, the mean of each score under p_t(x_t | y) against its Monte-Carlo "
        "error, and the diversity of 16 restorations per method. The reference is exact for gmm-mnist "
        "on a linear task; for mnist it is the shipped estimator trained on all 9,001 train digits "
        "(sr4, inpaint-box); without one only the diversity part runs.",
    )
    add_prior(a, "gmm-mnist")
    a.add_argument("--task", required=True, help=f"one of: {', '.join(dmap.TASKS)}")
    a.add_argument("--pairs", type=int, default=32, help="test digits for the score error (32)")
    a.add_argument("--samples", type=int, default=16, help="restorations per method for the diversity (16)")
    a.add_argument("--nfe", type=int, default=1000, help="network evaluations per restoration (1000)")
    a.add_argument("--mean-samples", type=int, default=128, help="samples of p_t(x_t | y) for the score-mean test (128)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--json", action="store_true", help="print the JSON of every number")
    a.add_argument("--data", metavar="SOURCE", help=DATA_HELP.replace("--images", "--pairs"))
    add_threads(a)
    a.set_defaults(func=cmd_analyze)
    _fidelity_parser(sub)


def _fidelity_parser(sub) -> None:
    f = sub.add_parser(
        "fidelity",
        help="measure how close each method's samples are to the exact posterior (Gaussian-mixture prior)",
        description="Measure --measurements test digits once each; solve each measurement --samples times "
        "per method and budget, and compare the samples with the exact posterior of the mixture prior: "
        "sliced Wasserstein-2 against its Monte-Carlo floor, energy distance, error of the sample mean, "
        "variance ratio, coverage of per-pixel 50 %% and 90 %% credible intervals, component weights. "
        "Writes results.jsonl (resumable), summary.json/.md, sw2_ratio_vs_nfe.png, variance_ratio_vs_nfe.png "
        "and std_maps.png.",
    )
    add_prior(f, "gmm-mnist", embedding=False)
    f.add_argument("--task", required=True, help="a linear task, e.g. sr4, inpaint-box (see dmap list)")
    f.add_argument("--methods", required=True, help=f"comma-separated, from: {', '.join(METHODS)}")
    f.add_argument("--samples", type=positive_int, default=64, help="samples per measurement and method (64)")
    f.add_argument("--measurements", type=positive_int, default=8, help="test digits, each measured once (8)")
    f.add_argument("--nfe", type=budget_list, default=(100,), help="network evaluations per sample; several: 100,1000 (100)")
    f.add_argument("--sigma-y", type=positive_float, default=DEFAULT_SIGMA_Y, help=f"noise std, > 0 ({DEFAULT_SIGMA_Y})")
    f.add_argument("--seed", type=int, default=0, help="seed of the operator, the noise and the samplers (0)")
    add_threads(f)
    f.add_argument("--out", required=True, help="output folder (rerun to finish an interrupted run)")
    f.add_argument("--json", action="store_true", help="print one JSON object per method and budget")
    f.set_defaults(func=cmd_fidelity)


def cmd_analyze(args) -> int:
    from dmap.analysis.run import analysis_figures, analyze

    check_names(args.prior, args.task)
    if args.pairs < 1 or args.samples < 2 or args.nfe < 1 or args.mean_samples < 2:
        raise UsageError("--pairs and --nfe must be >= 1, --samples and --mean-samples >= 2")
    prior = load_prior_or_usage(args.prior)
    if prior.latent:  # the score errors compare scores of x_t with a pixel-space reference
        raise UsageError(f"dmap analyze takes pixel priors; {args.prior} is a latent prior (its scores live on latents)")
    out = OutputFolder.prepare(args.out)
    task = dmap.make_task(args.task, prior.image_shape, generator=seeded(args.seed))
    x, ids = image_set_or_usage(args.data, args.pairs, prior.image_shape) if args.data else mnist_spread(args.pairs)
    y = task.simulate(x, generator=[seeded(args.seed, 1, int(i)) for i in ids])
    result, samples = analyze(
        prior,
        task,
        x,
        y,
        n_mean=args.mean_samples,
        n_samples=args.samples,
        nfe=args.nfe,
        seed=args.seed,
        progress=lambda msg: print(f"analyze: {msg}", file=sys.stderr, flush=True),
    )
    result["test_ids"] = ids.tolist()
    analysis_figures(result, samples, x[0], task.operator.view(y[:1])[0], out)
    (out / "analysis.json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    else:
        spread = ", ".join(f"{m} {d['pixel_std']:.3f}" for m, d in result["diversity"].items())
        print(f"wrote {out / 'analysis.json'} and figures; per-pixel std of the restorations: {spread}")
    return 0


def cmd_fidelity(args) -> int:
    from dmap.analysis.fidelity_run import FidelityConfig, FidelityError, markdown, run_fidelity

    check_names(args.prior, args.task)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        check_names(method=m)
    try:
        config = FidelityConfig(args.prior, args.task, args.samples, args.measurements, args.sigma_y, args.seed)
    except FidelityError as e:
        raise UsageError(str(e)) from None
    prior = load_prior_or_usage(args.prior)
    out = OutputFolder.prepare(args.out)
    bar = progress_bar(1, "fidelity")

    def progress(i: int, n: int, what: str) -> None:
        bar.total = n
        bar.update(1)
        bar.set_postfix_str(what)

    try:
        summary = run_fidelity(prior, config, methods, list(args.nfe), out, progress=progress)
    except FidelityError as e:
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    if args.json:
        for cell in summary:
            print(json.dumps(cell))
        return 0
    print(markdown(summary), end="")
    top = max(args.nfe)
    ratios = ", ".join(f"{c['method']} {c['variance_ratio']:.2f}" for c in summary if c["nfe"] == top and c["method"] != "exact")
    print(f"wrote {out / 'summary.md'} and the figures; variance ratio at {top} evaluations: {ratios}")
    return 0
