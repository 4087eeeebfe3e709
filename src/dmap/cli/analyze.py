"""``dmap analyze``: the paper's diagnostics of DPS."""

from __future__ import annotations

import json
import sys

import dmap
from dmap.cli.common import OutputFolder, UsageError, add_prior, add_threads, check_names, load_prior_or_usage
from dmap.data import folder_spread, mnist_spread
from dmap.rng import seeded


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
    a.add_argument("--data", metavar="FOLDER", help="images of this folder instead of the test digits")
    add_threads(a)
    a.set_defaults(func=cmd_analyze)


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
    try:
        x, ids = folder_spread(args.data, args.pairs)[:2] if args.data else mnist_spread(args.pairs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if tuple(x.shape[1:]) != tuple(prior.image_shape):
        raise UsageError(f"the images are {tuple(x.shape[1:])}, prior {args.prior} expects {prior.image_shape}; "
                         "give --data FOLDER with images of that shape")  # fmt: skip
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
