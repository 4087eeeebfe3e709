"""``dmap list``, ``dmap restore`` and ``dmap demo``."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time

import torch

import dmap
from dmap.cli.common import (PAPER_TASKS, UsageError, check_prior_task_method, finite, fit_image, load_cse_or_error,
                             load_prior_or_usage, out_dir, progress_bar)
from dmap.data import list_images, load_image, mnist_spread, save_image
from dmap.metrics import psnr, ssim
from dmap.priors import DEFAULT_PRIOR, PRIORS
from dmap.rng import seeded
from dmap.solvers import METHODS, NonFiniteError, load_presets, resolve_options


def add_parsers(sub) -> None:
    sub.add_parser("list", help="list the priors, tasks and methods, one line each").set_defaults(func=cmd_list)

    r = sub.add_parser("restore", help="simulate a measurement of each clean INPUT image and restore it",
                       description="Simulate y = A(x) + n for each INPUT (a clean image, or a folder of them), "
                       "restore x and write the restored image(s), a view of the measurement and a side-by-side "
                       "figure to --out. Options left out come from the preset for (prior, task, method).")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    r.add_argument("--task", required=True, help=f"one of: {', '.join(dmap.TASKS)}")
    r.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    r.add_argument("--prior", default=DEFAULT_PRIOR,
                   help=f"one of: {', '.join(PRIORS)} (default {DEFAULT_PRIOR}), or weights from dmap train (.safetensors)")
    r.add_argument("--steps", type=int, help="reverse diffusion steps (default: the preset)")
    r.add_argument("--step-size", type=finite, help="zeta of DPS / DMAP, or the guidance rate of DSG")
    r.add_argument("--inner-steps", type=int, help="K, DMAP's gradient steps per reverse step")
    r.add_argument("--cse", metavar="FILE", help="adapter for the cse methods (default: the shipped one for prior and task)")
    r.add_argument("--guide", choices=["prior", "cse"],
                   help="x0_hat of the likelihood gradient in dps+cse / dmap+cse (default: the preset)")
    r.add_argument("--presets", metavar="FILE", help="a preset file from dmap tune, over the shipped presets")
    r.add_argument("--sigma-y", type=finite, default=0.05, help="measurement noise std in [-1, 1] units (0.05)")
    r.add_argument("--seed", type=int, default=0, help="seed of the mask/kernel, the noise and the sampler (0)")
    r.add_argument("--samples", type=int, default=1, help="restorations per input (1)")
    r.add_argument("--batch-size", type=int, default=16, help="images solved together (16)")
    r.add_argument("--observed", action="store_true",
                   help="INPUT is the measurement itself (sr4 and the deblur tasks): no simulation, no PSNR")
    r.add_argument("--resize", action="store_true", help="resize/convert inputs to the prior's shape instead of refusing")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--json", action="store_true", help="print one JSON object per input")
    r.set_defaults(func=cmd_restore)

    d = sub.add_parser("demo", help="restore bundled test digits on the five paper tasks with DPS and DMAP",
                       description="Restore bundled test digits on the tasks of the paper with DPS and DMAP on the "
                       "default prior; print a PSNR table and write demo.png.")
    d.add_argument("--images", type=int, default=8, help="number of test digits (8)")
    d.add_argument("--nfe", type=int, default=500, help="network evaluations per image (500: the demo stays under 5 minutes; the benchmarks use 1000)")
    d.add_argument("--prior", default=DEFAULT_PRIOR)
    d.add_argument("--out", default=".", help="folder for demo.png (current folder)")
    d.set_defaults(func=cmd_demo)


def cmd_list(args) -> int:
    for name, (_, desc) in PRIORS.items():
        print(f"prior   {name:16s} {desc}")
    for name, (_, desc) in dmap.TASKS.items():
        print(f"task    {name:16s} {desc}")
    for name, m in METHODS.items():
        print(f"method  {name:16s} {m.description}")
    return 0


def cmd_restore(args) -> int:
    check_prior_task_method(args.prior, args.task, args.method)
    if args.sigma_y < 0:
        raise UsageError(f"--sigma-y must be >= 0, got {args.sigma_y}")
    if args.samples < 1 or args.batch_size < 1:
        raise UsageError("--samples and --batch-size must be >= 1")
    key = "guidance_rate" if args.method == "dsg" else "step_size"
    overrides = {"steps": args.steps, key: args.step_size}
    if args.inner_steps is not None:
        if "inner_steps" not in METHODS[args.method].defaults:
            raise UsageError(f"--inner-steps applies to the dmap methods only, not {args.method}")
        overrides["inner_steps"] = args.inner_steps
    uses_cse = METHODS[args.method].uses_cse
    if (args.cse or args.guide) and not uses_cse:
        raise UsageError(f"--cse and --guide apply to the cse methods only, not {args.method}")
    try:
        table = load_presets(args.presets) if args.presets else None
        options = resolve_options(args.method, args.prior, args.task, presets=table, guide=args.guide, **overrides)
        paths = list_images(args.inputs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    out = out_dir(args.out)

    prior = load_prior_or_usage(args.prior)
    try:
        task = dmap.make_task(args.task, prior.shape, sigma_y=args.sigma_y, generator=seeded(args.seed))
        cse = load_cse_or_error(prior, args.task, args.cse) if uses_cse else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    op = task.operator
    if args.observed and (len(op.y_shape) != 3 or not op.linear or op.y_shape[0] != prior.shape[0]):
        raise UsageError(f"--observed needs a task whose measurement is an image (sr4, deblur-*), not {args.task}")
    images = []
    for p in paths:
        try:
            x = load_image(p)
        except ValueError as e:
            raise UsageError(str(e)) from None
        target, what = (op.y_shape, f"the {args.task} measurement") if args.observed else (prior.shape, f"prior {args.prior}")
        images.append(fit_image(x, target, args.resize, p, what))

    # every input and sample is one independent problem whose generators depend on the seed
    # and the image's content, so an image gives the same result alone or in a folder
    batch = torch.stack(images)
    keys = [int(hashlib.sha256(x.numpy().tobytes()).hexdigest()[:8], 16) for x in images]
    truth = None if args.observed else batch
    y = batch if args.observed else task.simulate(batch, generator=[seeded(args.seed, 1, k) for k in keys])
    items = [(i, k) for i in range(len(batch)) for k in range(args.samples)]
    results = torch.empty(len(items), *prior.shape)
    seconds = torch.empty(len(items))
    bar = progress_bar(options["steps"] * math.ceil(len(items) / args.batch_size), f"{args.method} {args.task}")
    for start in range(0, len(items), args.batch_size):
        chunk = items[start : start + args.batch_size]
        gens = [seeded(args.seed, 2, keys[i], k) for i, k in chunk]
        t0 = time.perf_counter()
        try:
            results[start : start + len(chunk)] = dmap.solve(
                args.method, prior, task, y[[i for i, _ in chunk]], generator=gens, cse=cse,
                callback=lambda info: bar.update(1), **options)
        except NonFiniteError as e:
            bar.close()
            print(f"dmap: error: {e}", file=sys.stderr)
            return 1
        seconds[start : start + len(chunk)] = (time.perf_counter() - t0) / len(chunk)
    bar.close()

    out.mkdir(parents=True, exist_ok=True)
    from dmap.figures import grid

    nfe = METHODS[args.method].nfe(options)
    for i, path in enumerate(paths):
        stem = path.stem
        restored = [results[j] for j, (ii, _) in enumerate(items) if ii == i]
        names = [out / (f"{stem}_restored.png" if args.samples == 1 else f"{stem}_restored_{k}.png")
                 for k in range(args.samples)]
        for name, img in zip(names, restored):
            save_image(name, img)
        view = op.view(y[i : i + 1])[0]
        save_image(out / f"{stem}_measurement.png", view)
        row = ([] if truth is None else [truth[i]]) + [view] + restored
        labels = ([] if truth is None else ["truth"]) + ["measurement"] + [f"{args.method} {k}" for k in range(len(restored))]
        grid([row], out / f"{stem}_figure.png", col_labels=labels, cell=96)
        if args.json:
            stack = torch.stack(restored)
            rec = {"input": str(path), "task": args.task, "method": args.method, "prior": args.prior,
                   "steps": options["steps"], "nfe": nfe, "sigma_y": args.sigma_y, "seed": args.seed,
                   "options": options, "psnr": None, "ssim": None, "psnr_samples": None,
                   "seconds": float(seconds[[j for j, (ii, _) in enumerate(items) if ii == i]].sum()),
                   "output": str(names[0]), "outputs": [str(n) for n in names]}
            if truth is not None:
                ref = truth[i : i + 1].expand_as(stack)
                rec["psnr_samples"] = [round(float(v), 4) for v in psnr(stack, ref)]
                rec["psnr"] = round(float(psnr(stack, ref).mean()), 4)
                rec["ssim"] = round(float(ssim(stack, ref).mean()), 4)
            print(json.dumps(rec), flush=True)
    return 0


def cmd_demo(args) -> int:
    if args.images < 1 or args.nfe < 1:
        raise UsageError("--images and --nfe must be >= 1")
    check_prior_task_method(args.prior, PAPER_TASKS[0], "dps")
    out = out_dir(args.out)
    prior = load_prior_or_usage(args.prior)
    x, _ = mnist_spread(args.images)
    methods = ["dps", "dmap"]
    rows, labels, table = [], [], []
    start = time.perf_counter()
    for name in PAPER_TASKS:
        task = dmap.make_task(name, prior.shape, generator=seeded(0))
        y = task.simulate(x, generator=[seeded(0, 1, i) for i in range(len(x))])
        rows += [list(x), list(task.operator.view(y))]
        labels += [f"{name}: truth", f"{name}: measured"]
        scores = []
        for method in methods:
            opts = resolve_options(method, args.prior, name)
            opts["steps"] = METHODS[method].steps_for(args.nfe, opts)
            bar = progress_bar(opts["steps"], f"{method} {name}")
            xhat = dmap.solve(method, prior, task, y, generator=[seeded(0, 2, i) for i in range(len(x))],
                              callback=lambda info: bar.update(1), **opts)
            bar.close()
            rows.append(list(xhat))
            labels.append(f"{name}: {method}")
            scores.append(float(psnr(xhat, x).mean()))
        table.append((name, scores))
    out.mkdir(parents=True, exist_ok=True)
    from dmap.figures import grid

    grid(rows, out / "demo.png", row_labels=labels, cell=48)
    print(f"PSNR (dB) on {args.images} test digits, prior {args.prior}, {args.nfe} network evaluations per image, "
          f"sigma_y = 0.05")
    print(f"{'task':16s}" + "".join(f"{m:>8s}" for m in methods))
    for name, scores in table:
        print(f"{name:16s}" + "".join(f"{s:8.2f}" for s in scores))
    print(f"wrote {out / 'demo.png'} in {time.perf_counter() - start:.0f} s")
    return 0
