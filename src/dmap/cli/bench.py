"""``dmap bench`` (the benchmark runner) and ``dmap tune`` (step sizes on train digits)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import dmap
from dmap.bench import METRICS, PROTOCOLS
from dmap.catalogue import PRIORS
from dmap.cli.common import (
    DATA_HELP,
    OutputFolder,
    UsageError,
    add_device,
    add_metric_options,
    add_prior,
    add_threads,
    budget_list,
    check_names,
    check_suited,
    chosen_metrics,
    device_name,
    load_cse_or_usage,
    load_prior_or_usage,
    nonnegative,
    option_overrides,
    positive_int,
)
from dmap.operators import DEFAULT_SIGMA_Y
from dmap.presets import PresetError, read_preset_file, resolve_options, write_preset
from dmap.solvers import METHODS


def add_parsers(sub) -> None:
    _bench_parser(sub)
    _tune_parser(sub)


def _bench_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="run a task x method grid on test digits: resumable, shardable, with a report",
        description="Solve every (task, method, budget, image) of the grid, appending each result to "
        "the store in --out the moment its batch finishes; rerun the same command to finish an "
        "interrupted run (other settings into the same folder are refused). Writes manifest.json, "
        "results.jsonl, summary.json/.md/.csv, psnr.png, psnr_vs_nfe_<task>.png (several budgets) and "
        "grid_<task>.png. Methods may carry options: dmap[step_size=2,inner_steps=5], "
        "dps+cse[guide=cse], dps+cse[cse=FILE]. Distributed: --workers N, or torchrun "
        "--nproc_per_node N -m dmap bench ...; the results do not depend on the worker count.",
    )
    add_prior(b, embedding=False)  # a Stable Diffusion folder's embedding: FOLDER/prompt_embedding.safetensors
    b.add_argument("--tasks", required=True, help=f"comma-separated, from: {', '.join(dmap.TASKS)}")
    b.add_argument("--methods", required=True, help=f"comma-separated, from: {', '.join(METHODS)} (with [options])")
    b.add_argument("--images", type=positive_int, default=32, help="digits evenly spaced over the split (32)")
    b.add_argument(
        "--split",
        choices=["test", "validation", "train"],
        default="test",
        help="test (default; reported numbers), validation (checks of presets) or train (tuning)",
    )
    b.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="equal-nfe",
        help="equal-nfe: every method gets the same network evaluations per image (--nfe); equal-steps: the "
        "paper's protocol, every method the same reverse steps (--steps), DMAP with K = 3, the evaluations "
        "recorded per cell (equal-nfe)",
    )
    b.add_argument("--nfe", type=budget_list, help="equal-nfe budgets, network evaluations per image; several: 250,500,1000 (1000)")
    b.add_argument("--steps", type=budget_list, help="equal-steps budgets, reverse steps; several: 100,250")
    b.add_argument("--seed", type=int, default=0, help="seed of masks (S), noise (S+1) and samplers (S+2) (0)")
    b.add_argument(
        "--sigma-y", type=nonnegative, default=DEFAULT_SIGMA_Y, help=f"measurement noise std in [-1, 1] units ({DEFAULT_SIGMA_Y})"
    )
    _add_repeats(b)
    b.add_argument("--batch-size", type=positive_int, default=16, help="images solved together (16)")
    _add_bench_inputs(b)
    add_metric_options(b, METRICS, ("lpips-alex", "fid"))
    b.add_argument("--workers", type=positive_int, default=1, help="processes sharing the work (1)")
    add_threads(b)
    b.add_argument("--device", type=device_name, help="cpu or cuda (default: cuda when available)")
    b.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="precision of the network (autocast; float32)",
    )
    b.add_argument("--out", required=True, help="the benchmark folder")
    b.add_argument(
        "--refresh",
        action="store_true",
        help="in an existing --out with the same images, seeds, noise and prior: solve again the cells whose "
        "settings changed (retuned presets, new adapters) and add new tasks, methods or budgets",
    )
    b.add_argument("--json", action="store_true", help="print the summary cells as JSON")
    b.set_defaults(func=cmd_bench)


def _add_repeats(b) -> None:
    """How often each image is solved: samples per draw, draws of operator, noise and seed."""
    b.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        help="restorations per image (1); with several, PSNR is their mean and the PSNR of their mean is reported too",
    )
    b.add_argument(
        "--draws",
        type=positive_int,
        default=1,
        metavar="D",
        help="solve each image under D draws of the operator (mask, kernel, permutation), the noise and the sampler "
        "seed (1); the tables then average each image over its draws",
    )


def _add_bench_inputs(b) -> None:
    """What a benchmark reads besides its grid: a preset file, images, a kernel, a mask."""
    b.add_argument("--presets", metavar="FILE", help="a preset file from dmap tune, over the shipped presets")
    b.add_argument("--data", metavar="SOURCE", help=DATA_HELP)
    b.add_argument(
        "--resolution",
        type=positive_int,
        metavar="R",
        help="with --data: centre-crop and resize the images to R x R (default: the prior's size)",
    )
    b.add_argument("--kernel", metavar="FILE", help="a measured blur kernel (.npy or image) for the deblur tasks")
    b.add_argument("--mask", metavar="FILE", help="an inpainting mask image (white = observed) for the inpaint tasks")


def _tune_parser(sub) -> None:
    t = sub.add_parser(
        "tune",
        help="search a method's step size on train digits and write a preset file",
        description="Coarse-to-fine search on a log grid of the method's guidance strength (step "
        "size; guidance rate for dsg; and K for the dmap methods) at a budget of --nfe network "
        "evaluations per image, maximizing the mean PSNR on --images train digits (never the test "
        "split). Prints every trial and writes the best options into the preset file --out (added to "
        "what it holds), which restore and bench read with --presets.",
    )
    add_prior(t)
    t.add_argument("--task", required=True, help=f"one of: {', '.join(dmap.TASKS)}")
    t.add_argument("--method", required=True, help="one of: " + ", ".join(m for m in METHODS if m != "cse"))
    t.add_argument("--images", type=positive_int, default=8, help="train digits (8)")
    t.add_argument(
        "--nfe",
        type=budget_list,
        default=(250,),
        help="network evaluations per image; several (100,250,1000): one setting for all, scored by its mean "
        "PSNR over them, written with the steps of the largest (250)",
    )
    t.add_argument(
        "--around", metavar="PRIOR", help="a local search around this prior's presets (x1/3, x1, x3, widened at an edge; K kept)"
    )
    t.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an option every trial keeps, e.g. inner_steps=3: DMAP's K is then not searched and the preset is "
        "the one a run at that K takes (repeatable)",
    )
    t.add_argument(
        "--sigma-y",
        type=nonnegative,
        default=DEFAULT_SIGMA_Y,
        help=f"measurement noise std of the tuning measurements ({DEFAULT_SIGMA_Y}); 0 writes the noiseless preset",
    )
    t.add_argument("--cse", metavar="FILE", help="adapter for the cse methods (default: the shipped one)")
    t.add_argument("--data", metavar="SOURCE", help=DATA_HELP.replace("bundled digits", "train digits"))
    add_threads(t)
    add_device(t)
    t.add_argument("--out", required=True, metavar="FILE", help="preset file to write (JSON)")
    t.add_argument("--json", action="store_true", help="print the trials and the choice as JSON")
    t.set_defaults(func=cmd_tune)


def cmd_bench(args) -> int:
    from dmap.bench import BenchConfig, BenchError, markdown, run_bench, split_specs

    check_names(args.prior)
    flag, wrong = ("--nfe", "--steps") if args.protocol == "equal-nfe" else ("--steps", "--nfe")
    if getattr(args, wrong[2:]) is not None:
        raise UsageError(f"{wrong} does not apply to --protocol {args.protocol}; give the budgets with {flag}")
    budgets = getattr(args, flag[2:]) or ((1000,) if flag == "--nfe" else None)
    if budgets is None:
        raise UsageError("--protocol equal-steps needs --steps (e.g. --steps 100,250)")
    try:
        config = BenchConfig(
            args.prior,
            tuple(split_specs(args.tasks)),
            tuple(split_specs(args.methods)),
            args.images,
            budgets,
            split=args.split,
            seed=args.seed,
            sigma_y=args.sigma_y,
            batch_size=args.batch_size,
            presets=args.presets,
            threads=args.threads,
            data=args.data,
            dtype=args.dtype,
            kernel=args.kernel,
            mask=args.mask,
            protocol=args.protocol,
            samples=args.samples,
            draws=args.draws,
            resolution=args.resolution,
            grad_checkpointing=args.grad_checkpointing,
            decoder_slicing=args.decoder_slicing,
            channels_last=args.channels_last,
            metric_weights=args.metric_weights,
            metrics=chosen_metrics(args),
        )
        out = OutputFolder.prepare(args.out)
        summary = run_bench(config, out, workers=args.workers, device=args.device, refresh=args.refresh)
    except BenchError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(summary))
    elif summary:
        print(markdown(summary), end="")
        print(f"wrote {out / 'summary.md'} and the report")
    return 0


def cmd_tune(args) -> int:
    from dmap.catalogue import tuning_problem
    from dmap.tune import tunable, tune, tune_budgets

    check_names(args.prior, args.task, args.method)
    if args.cse and not METHODS[args.method].uses_cse:
        raise UsageError(f"--cse applies to the cse methods only, not {args.method}")
    if args.method not in tunable():
        raise UsageError(f"{args.method} has no step size to tune; choose from {', '.join(tunable())}")
    if args.around is not None and args.around not in PRIORS:
        raise UsageError(f"--around {args.around}: unknown prior; choose from {', '.join(PRIORS)}")
    out = Path(args.out)
    if out.exists():
        try:
            read_preset_file(out)
        except PresetError as e:
            raise UsageError(f"--out {out}: exists and is not a valid preset file ({e})") from None
    OutputFolder.prepare(out.parent or ".")
    prior = load_prior_or_usage(args.prior, args)
    try:
        task, x, y = tuning_problem(prior, args.task, args.images, sigma_y=args.sigma_y, data=args.data)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    task, x, y = task.to(prior.device), x.to(prior.device), y.to(prior.device)
    fixed = option_overrides(args.option)
    try:
        around = resolve_options(args.method, args.around, args.task, sigma_y=args.sigma_y, **fixed) if args.around else None
        start = (around or METHODS[args.method].options()).replace(**fixed)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--option: {e}") from None
    for budget in args.nfe:
        check_suited(args.method, task, start.for_budget(budget), prior)
    cse = load_cse_or_usage(prior, task, args.cse) if METHODS[args.method].uses_cse else None

    def show(trial: dict) -> None:
        if not args.json:
            print(
                "  ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in trial.items() if k != "psnr_per_image"
                ),
                file=sys.stderr,
                flush=True,
            )

    by_steps = None
    if len(args.nfe) > 1:
        chosen, trials, by_steps = tune_budgets(
            prior, task, args.method, x, y, nfe=args.nfe, around=around, fixed=fixed, log=show, cse=cse
        )
    else:
        chosen, trials = tune(prior, task, args.method, x, y, nfe=args.nfe, around=around, fixed=fixed, log=show, cse=cse)
    note = _tune_note(args, trials, by_steps)
    free_k = not set(chosen.keyed()) & set(fixed)
    write_preset(out, prior.name, args.task, args.method, chosen, note, by_steps, sigma_y=args.sigma_y, default=free_k)
    if args.json:
        print(json.dumps({"chosen": chosen.to_dict(), "by_steps": by_steps, "trials": trials}))
    else:
        print(_chosen_line(chosen, trials, by_steps, args) + f"; wrote {out}")
    return 0


def _tune_note(args, trials: list[dict], by_steps: dict | None) -> str:
    """The provenance a tuned preset carries: the command and its best score."""
    budgets = ",".join(map(str, args.nfe))
    command = (
        f"dmap tune --prior {args.prior} --task {args.task} --method {args.method} --images {args.images} "
        f"--nfe {budgets}"
        + f" --around {args.around}" * bool(args.around)
        + "".join(f" --option {k}={v}" for k, v in option_overrides(args.option).items())
        + f" --sigma-y {args.sigma_y:g}" * (args.sigma_y != DEFAULT_SIGMA_Y)
        + f" --cse {args.cse}" * bool(args.cse)
        + f" --data {args.data}" * bool(args.data)
    )
    return (
        f"{command}: {args.images} train digits, {budgets} network evaluations per image, best mean PSNR "
        f"{max(t['psnr'] for t in trials):.2f} dB over {len(trials)} trials"
        + f"; best step size per number of steps {by_steps}"
        * bool(by_steps)
    )


def _chosen_line(chosen, trials: list[dict], by_steps: dict | None, args) -> str:
    """``tune``'s result in words: the searched options, the score, the per-steps values."""
    strength = type(chosen).strength()
    searched = [strength] + [f.name for f in dataclasses.fields(chosen) if "choices" in f.metadata]
    values = ", ".join(f"{name.replace('_', ' ')} {getattr(chosen, name):g}" for name in searched)
    best = max(t["psnr"] for t in trials)
    line = f"chose {values}: {best:.2f} dB mean PSNR on {args.images} train images at {','.join(map(str, args.nfe))} evaluations"
    if by_steps:
        line += f"; best {strength.replace('_', ' ')} by number of steps: " + ", ".join(
            f"{k} -> {v:g}" if not isinstance(v, list) else f"{k} -> {v[0]:g} at {v[1]} steps" for k, v in by_steps.items()
        )
    return line
