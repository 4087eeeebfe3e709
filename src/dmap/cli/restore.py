"""``dmap list``, ``dmap restore`` and ``dmap demo``."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

import dmap
from dmap.catalogue import PAPER_TASKS, PRIOR_FORMS, PRIORS
from dmap.cli.common import (
    OutputFolder,
    UsageError,
    add_device,
    add_metric_options,
    add_prior,
    add_threads,
    check_names,
    check_suited,
    chosen_metrics,
    fit_image,
    load_cse_or_usage,
    load_prior_or_usage,
    nonnegative,
    option_overrides,
    positive_float,
    positive_int,
    progress_bar,
    task_from_args,
)
from dmap.data import list_images, load_image, mnist_spread, save_image
from dmap.metrics import psnr, ssim
from dmap.operators import DEFAULT_SIGMA_Y
from dmap.presets import PresetError, load_presets, resolve_options
from dmap.rng import seeded
from dmap.solvers import METHODS
from dmap.utils import WeightsError


def add_parsers(sub) -> None:
    sub.add_parser("list", help="list the priors, tasks and methods, one line each").set_defaults(func=cmd_list)
    _restore_parser(sub)
    _demo_parser(sub)


def _restore_parser(sub) -> None:
    r = sub.add_parser(
        "restore",
        help="simulate a measurement of each clean INPUT image and restore it",
        description="Simulate y = A(x) + n for each INPUT (a clean image, or a folder of them), "
        "restore x and write the restored image(s), a view of the measurement and a side-by-side "
        "figure to --out. Options left out come from the preset for (prior, task, method).",
    )
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    r.add_argument("--task", required=True, help=f"one of: {', '.join(dmap.TASKS)}")
    r.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    add_prior(r)
    _add_method_options(r)
    r.add_argument("--kernel", metavar="FILE", help="a measured blur kernel (.npy or image) for the deblur tasks")
    r.add_argument("--mask", metavar="FILE", help="an inpainting mask image (white = observed) for the inpaint tasks")
    r.add_argument(
        "--photons",
        type=positive_float,
        help="Poisson noise at this many photons per unit intensity (plus the Gaussian --sigma-y, if > 0)",
    )
    r.add_argument(
        "--sigma-y", type=nonnegative, default=DEFAULT_SIGMA_Y, help=f"measurement noise std in [-1, 1] units ({DEFAULT_SIGMA_Y})"
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the mask/kernel, the noise and the sampler (0)")
    r.add_argument("--samples", type=positive_int, default=1, help="restorations per input (1)")
    r.add_argument("--batch-size", type=positive_int, default=16, help="images solved together (16)")
    r.add_argument(
        "--observed", action="store_true", help="INPUT is the measurement itself (sr4 and the deblur tasks): no simulation, no PSNR"
    )
    r.add_argument(
        "--resize",
        action="store_true",
        help="convert inputs to the prior's shape (channels, size) instead of refusing; says what it did",
    )
    add_threads(r)
    add_device(r)
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--json", action="store_true", help="print one JSON object per input")
    add_metric_options(r, ("lpips-alex", "lpips-vgg"), ("lpips-alex",))
    r.set_defaults(func=cmd_restore)


def _add_method_options(r) -> None:
    """The budget and the method's options (over its preset)."""
    r.add_argument(
        "--nfe",
        type=positive_int,
        help="budget in network evaluations per image; the steps follow from the method and its K (default: the preset)",
    )
    r.add_argument("--steps", type=positive_int, help="reverse diffusion steps, instead of --nfe (default: the preset)")
    r.add_argument(
        "--step-size",
        type=nonnegative,
        help="the method's strength (the option dmap tune searches): zeta of DPS / DMAP and the guidance rate of DSG "
        "(per unit of diffusion time), lambda of DiffPIR / RED-diff, the weight of ΠGDM, the Langevin lr of DAPS",
    )
    r.add_argument("--inner-steps", type=positive_int, help="K, DMAP's gradient steps per reverse step")
    r.add_argument(
        "--guide", choices=["prior", "cse"], help="x0_hat of the likelihood gradient in dps+cse / dmap+cse (default: the preset)"
    )
    r.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="any other option of the method, e.g. eta=0.5 or clamp=false (repeatable)",
    )
    r.add_argument("--cse", metavar="FILE", help="adapter for the cse methods (default: the shipped one for prior and task)")
    r.add_argument("--presets", metavar="FILE", help="a preset file from dmap tune, over the shipped presets")


def _demo_parser(sub) -> None:
    d = sub.add_parser(
        "demo",
        help="restore bundled test digits on the five paper tasks with DPS and DMAP",
        description="Restore bundled test digits on the tasks of the paper with DPS and DMAP on the "
        "default prior; print a PSNR row per task as it finishes and write demo.png.",
    )
    d.add_argument("--images", type=positive_int, default=8, help="number of test digits (8)")
    d.add_argument("--nfe", type=positive_int, default=500, help="network evaluations per image (500)")
    add_prior(d)
    add_threads(d)
    d.add_argument("--out", default=".", help="folder for demo.png (current folder)")
    d.set_defaults(func=cmd_demo)


def cmd_list(args) -> int:
    rows = [("prior", name, desc) for name, (_, desc) in PRIORS.items()]
    rows += [("prior", name, desc) for name, desc in PRIOR_FORMS.items()]
    rows += [("task", name, spec.description) for name, spec in dmap.TASKS.items()]
    rows += [("method", name, m.description) for name, m in METHODS.items()]
    width = max(len(name) for _, name, _ in rows)
    for kind, name, desc in rows:
        print(f"{kind:7s} {name:{width}s}  {desc}")
    return 0


def _options(args):
    """The resolved options of ``args.method`` (CLI flags over the presets)."""
    m = METHODS[args.method]
    overrides = option_overrides(args.option)
    for key, value in (
        ("steps", args.steps),
        (m.options.strength() or "step_size", args.step_size),
        ("inner_steps", args.inner_steps),
        ("guide", args.guide),
    ):
        if value is not None:
            overrides[key] = value
    if args.cse and not m.uses_cse:
        raise UsageError(f"--cse applies to the cse methods only, not {args.method}")
    try:
        table = load_presets(args.presets) if args.presets else None
        return resolve_options(args.method, args.prior, args.task, presets=table, nfe=args.nfe, sigma_y=args.sigma_y, **overrides)
    except (ValueError, PresetError) as e:
        raise UsageError(str(e)) from None


def _load_inputs(args, prior, op) -> tuple[list[Path], torch.Tensor]:
    try:
        paths = list_images(args.inputs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if args.observed and (len(op.y_shape) != 3 or not op.linear or op.y_shape[0] != prior.image_shape[0]):
        raise UsageError(f"--observed needs a task whose measurement is an image (sr4, deblur-*), not {args.task}")
    target, what = (op.y_shape, f"the {args.task} measurement") if args.observed else (prior.image_shape, f"prior {args.prior}")
    images, notes = [], []
    for p in paths:
        try:
            images.append(fit_image(load_image(p, notes), target, args.resize, p, what))
        except ValueError as e:
            raise UsageError(str(e)) from None
    for note in notes:
        print(f"dmap: note: {note}", file=sys.stderr)
    return paths, torch.stack(images)


def _solve_all(args, prior, task, y, options, keys, cse) -> tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor]:
    """Every (input, sample) as one independent problem whose generators depend on the
    seed and the input's content, so an image gives the same result alone or in a folder."""
    items = [(i, k) for i in range(len(y)) for k in range(args.samples)]
    device = prior.device
    task = task.to(device)
    results = torch.empty(len(items), *prior.image_shape)
    seconds = torch.empty(len(items))
    bar = progress_bar(options.steps * math.ceil(len(items) / args.batch_size), f"{args.method} {args.task}")
    try:
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            t0 = time.perf_counter()
            results[start : start + len(chunk)] = dmap.run_method(
                args.method,
                prior,
                task,
                y[[i for i, _ in chunk]].to(device),
                options,
                cse=cse,
                generator=[seeded(args.seed, 2, keys[i], k) for i, k in chunk],
                callback=lambda info: bar.update(1),
            ).cpu()
            seconds[start : start + len(chunk)] = (time.perf_counter() - t0) / len(chunk)
    finally:
        bar.close()
    return items, results, seconds


def _write(args, out, paths, truth, y, op, options, items, results, seconds, nets) -> None:
    from dmap.figures import grid

    for i, path in enumerate(paths):
        mine = [j for j, (ii, _) in enumerate(items) if ii == i]
        restored = results[mine]
        names = [
            out / (f"{path.stem}_restored.png" if args.samples == 1 else f"{path.stem}_restored_{k}.png")
            for k in range(args.samples)
        ]
        for name, img in zip(names, restored):
            save_image(name, img)
        view = op.view(y[i : i + 1])[0]
        save_image(out / f"{path.stem}_measurement.png", view)
        labels = [args.method] if args.samples == 1 else [f"{args.method} #{k + 1}" for k in range(args.samples)]
        summary = _write_summary(out, path, restored) if args.samples > 1 else {}
        row = ([] if truth is None else [truth[i]]) + [view] + list(summary.values()) + list(restored)
        grid(
            [row],
            out / f"{path.stem}_figure.png",
            cell=96,
            col_labels=([] if truth is None else ["truth"]) + ["measurement"] + list(summary) + labels,
        )
        rec = {
            "input": str(path),
            "task": args.task,
            "method": args.method,
            "prior": args.prior,
            "steps": options.steps,
            "nfe": options.nfe(),
            "sigma_y": args.sigma_y,
            "seed": args.seed,
            "options": options.to_dict(),
            "psnr": None,
            "ssim": None,
            "psnr_samples": None,
            "seconds": float(seconds[mine].sum()),
            "output": str(names[0]),
            "outputs": [str(n) for n in names],
        }
        if truth is not None:
            rec.update(_scores(restored, truth[i], summary, nets))
        if summary:
            rec["summary"] = str(out / f"{path.stem}_summary.npz")
        print(json.dumps(rec) if args.json else _summary_line(rec, args.samples), flush=True)


def _write_summary(out, path, samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """NAME_mean.png, NAME_std.png (0 black to the largest std white) and NAME_summary.npz
    (mean, std, the 90 % interval's lower and upper, in [-1, 1] units); returns the mean and
    the std map as images for the figure."""
    import numpy as np

    from dmap.analysis.fidelity import posterior_summary

    s = posterior_summary(samples, 0.9)
    std_view = s["std"] / s["std"].max().clamp_min(1e-12) * 2 - 1
    save_image(out / f"{path.stem}_mean.png", s["mean"])
    save_image(out / f"{path.stem}_std.png", std_view)
    np.savez_compressed(out / f"{path.stem}_summary.npz", level=0.9, **{k: v.numpy() for k, v in s.items()})
    return {"mean": s["mean"], "std": std_view}


def _metric_nets(args) -> dict:
    """The LPIPS networks of ``--metrics`` / ``--metric-weights``, their files checked before any solving."""
    from dmap.metrics.perceptual import lpips_net, weights_dir

    metrics = chosen_metrics(args)
    if metrics and args.observed:
        raise UsageError("--metrics need the truth: not with --observed")
    try:
        return {m.replace("-", "_"): lpips_net(weights_dir(args.metric_weights), m.split("-")[1]) for m in metrics}
    except WeightsError as e:
        raise UsageError(str(e)) from None


def _scores(restored: torch.Tensor, truth: torch.Tensor, summary: dict, nets: dict) -> dict:
    """PSNR (each sample and their mean), SSIM, and the LPIPS of ``nets``, against ``truth``."""
    ref = truth[None].expand_as(restored)
    rec = {
        "psnr_samples": [round(float(v), 4) for v in psnr(restored, ref)],
        "psnr": round(float(psnr(restored, ref).mean()), 4),
        "ssim": round(float(ssim(restored, ref).mean()), 4),
    }
    with torch.no_grad():
        rec.update({name: round(float(net(restored, ref).mean()), 4) for name, net in nets.items()})
    if summary:
        rec["psnr_of_mean"] = round(float(psnr(summary["mean"][None], truth[None])), 4)
    return rec


def _summary_line(rec: dict, samples: int) -> str:
    """One line per input: what was written and the headline number."""
    score = (
        "" if rec["psnr"] is None else f"PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.3f}" + " (mean of samples)" * (samples > 1)
    )
    wrote = rec["output"] if samples == 1 else f"{samples} restorations ({rec['output']}, ...), their mean, std and 90 % interval"
    if rec.get("psnr_of_mean") is not None:
        score += f"; PSNR of their mean {rec['psnr_of_mean']:.2f} dB"
    score += "".join(f", LPIPS-{k[6:]} {rec[k]:.4f}" for k in ("lpips_alex", "lpips_vgg") if k in rec)
    return f"{rec['input']}: {score}{', ' * bool(score)}{rec['seconds']:.1f} s; wrote {wrote}"


def cmd_restore(args) -> int:
    check_names(args.prior, args.task, args.method)
    options = _options(args)
    nets = _metric_nets(args)
    out = OutputFolder.prepare(args.out)
    prior = load_prior_or_usage(args.prior, args)
    task = task_from_args(args, prior.image_shape)
    check_suited(args.method, task, options, prior)
    cse = load_cse_or_usage(prior, task, args.cse) if METHODS[args.method].uses_cse else None
    paths, batch = _load_inputs(args, prior, task.operator)
    keys = [int(hashlib.sha256(x.numpy().tobytes()).hexdigest()[:8], 16) for x in batch]
    truth = None if args.observed else batch
    y = batch if args.observed else task.simulate(batch, generator=[seeded(args.seed, 1, k) for k in keys])
    items, results, seconds = _solve_all(args, prior, task, y, options, keys, cse)
    _write(args, out, paths, truth, y, task.operator, options, items, results, seconds, nets)
    return 0


def cmd_demo(args) -> int:
    check_names(args.prior)
    out = OutputFolder.prepare(args.out)
    prior = load_prior_or_usage(args.prior)
    x, _ = mnist_spread(args.images)
    methods = ["dps", "dmap"]
    rows, labels = [], []
    start = time.perf_counter()
    print(
        f"PSNR (dB) on {args.images} test digits, prior {args.prior}, {args.nfe} network evaluations per image, "
        f"sigma_y = {DEFAULT_SIGMA_Y}",
        flush=True,
    )
    print(f"{'task':16s}" + "".join(f"{m:>8s}" for m in methods), flush=True)
    for name in PAPER_TASKS:
        task = dmap.make_task(name, prior.image_shape, generator=seeded(0))
        y = task.simulate(x, generator=[seeded(0, 1, i) for i in range(len(x))])
        rows += [list(x), list(task.operator.view(y))]
        labels += [f"{name}: truth", f"{name}: measured"]
        scores = []
        for method in methods:
            opts = resolve_options(method, prior.name, name, nfe=args.nfe, sigma_y=task.sigma_y)
            bar = progress_bar(opts.steps, f"{method} {name}")
            xhat = dmap.run_method(
                method,
                prior,
                task,
                y,
                opts,
                generator=[seeded(0, 2, i) for i in range(len(x))],
                callback=lambda info, bar=bar: bar.update(1),
            )
            bar.close()
            scores.append(float(psnr(xhat, x).mean()))
            rows.append(list(xhat))
            labels.append(f"{name}: {method}, {scores[-1]:.2f} dB")
        print(f"{name:16s}" + "".join(f"{s:8.2f}" for s in scores), flush=True)
    from dmap.figures import grid

    grid(rows, out / "demo.png", row_labels=labels, cell=48)
    print(f"wrote {out / 'demo.png'} in {time.perf_counter() - start:.0f} s")
    return 0
