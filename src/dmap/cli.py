"""The ``dmap`` command line: ``list``, ``restore``, ``demo``."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

import dmap
from dmap.data import list_images, load_image, mnist, mnist_spread, save_image
from dmap.metrics import psnr, ssim
from dmap.priors import DEFAULT_PRIOR, PRIORS, WeightsError
from dmap.rng import seeded
from dmap.solvers import METHODS, NonFiniteError, resolve_options

PAPER_TASKS = ["inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2"]


class UsageError(Exception):
    """Bad input: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="dmap", description="Imaging inverse problems with diffusion priors: DPS, DSG and DMAP "
               "(Xu et al., ICLR 2025) on shipped priors.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    sub.add_parser("list", help="list the priors, tasks and methods, one line each")

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
    r.add_argument("--step-size", type=_finite, help="zeta of DPS / DMAP, or the guidance rate of DSG")
    r.add_argument("--inner-steps", type=int, help="K, DMAP's gradient steps per reverse step")
    r.add_argument("--cse", metavar="FILE", help="adapter for the cse methods (default: the shipped one for prior and task)")
    r.add_argument("--guide", choices=["prior", "cse"],
                   help="x0_hat of the likelihood gradient in dps+cse / dmap+cse (default: the preset)")
    r.add_argument("--sigma-y", type=_finite, default=0.05, help="measurement noise std in [-1, 1] units (0.05)")
    r.add_argument("--seed", type=int, default=0, help="seed of the mask/kernel, the noise and the sampler (0)")
    r.add_argument("--samples", type=int, default=1, help="restorations per input (1)")
    r.add_argument("--batch-size", type=int, default=16, help="images solved together (16)")
    r.add_argument("--observed", action="store_true",
                   help="INPUT is the measurement itself (sr4 and the deblur tasks): no simulation, no PSNR")
    r.add_argument("--resize", action="store_true", help="resize/convert inputs to the prior's shape instead of refusing")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--json", action="store_true", help="print one JSON object per input")

    t = sub.add_parser("train", help="train a diffusion prior (a small UNet) on the bundled digits or a folder",
                       description="Train an epsilon-predicting UNet with EMA weights. Resumable: rerun the same "
                       "command after an interruption. Writes OUT/NAME.safetensors, OUT/NAME.json, OUT/loss.csv and "
                       "OUT/checkpoint.pt.")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--data", help="folder of training images (default: the bundled train digits)")
    t.add_argument("--name", default="prior", help="name of the weights file and of the prior (prior)")
    t.add_argument("--steps", type=int, default=12000, help="optimizer steps (12000)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    t.add_argument("--lr", type=_finite, default=3e-4, help="Adam learning rate (3e-4)")
    t.add_argument("--channels", type=int, default=32, help="base channel count of the UNet (32)")
    t.add_argument("--seed", type=int, default=0, help="seed of init, batches, timesteps and noise (0)")
    t.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (500)")

    c = sub.add_parser("train-cse", help="train a conditional score estimator (adapter) for a prior and a task",
                       description="Train a ControlNet-style adapter on the frozen prior network from --images train "
                       "digits evenly spaced over the train split (their indices are recorded in FILE's .json): "
                       "epsilon-MSE on pairs (x, y = A(x) + n) with fresh noise, timestep and mask each batch. "
                       "Resumable: checkpoints go to FILE without its suffix plus .run/.")
    c.add_argument("--prior", default=DEFAULT_PRIOR, help=f"a network prior (default {DEFAULT_PRIOR}) or a .safetensors")
    c.add_argument("--task", required=True, help="a linear task: " + ", ".join(
        n for n in dmap.TASKS if n != "phase-retrieval"))
    c.add_argument("--images", type=int, default=100, help="training digits (100, the paper's setting)")
    c.add_argument("--steps", type=int, default=1500, help="optimizer steps (1500)")
    c.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    c.add_argument("--lr", type=_finite, default=2e-4, help="Adam learning rate (2e-4)")
    c.add_argument("--sigma-y", type=_finite, default=0.05, help="measurement noise std in [-1, 1] units (0.05)")
    c.add_argument("--seed", type=int, default=0, help="seed of init, batches, masks and noise (0)")
    c.add_argument("--out", required=True, metavar="FILE", help="adapter to write (.safetensors)")

    s = sub.add_parser("sample", help="draw unconditional samples from a prior into an image grid",
                       description="Sample the prior with the ancestral (DDPM) reverse process on respaced steps.")
    s.add_argument("--prior", default=DEFAULT_PRIOR, help=f"one of: {', '.join(PRIORS)} (default {DEFAULT_PRIOR})")
    s.add_argument("-n", type=int, default=64, help="number of samples (64)")
    s.add_argument("--steps", type=int, default=250, help="reverse steps (250)")
    s.add_argument("--eta", type=_finite, default=1.0, help="DDIM eta: 1 ancestral, 0 deterministic (1)")
    s.add_argument("--seed", type=int, default=0, help="seed (0)")
    s.add_argument("--out", required=True, help="grid image to write, e.g. grid.png")
    s.add_argument("--npz", help="also write the raw samples ([n, C, H, W] float32 in [-1, 1]) to this .npz")

    a = sub.add_parser("analyze", help="measure the paper's findings about DPS: score error, score mean, diversity",
                       description="For test digits and their measurements: the error of the unconditional and of "
                       "DPS's implied conditional score against the exact one, the mean of each score under "
                       "p_t(x_t | y) against its Monte-Carlo error, and the diversity of 16 restorations per method. "
                       "The score parts need an exact reference: gmm-mnist on a linear task.")
    a.add_argument("--prior", default="gmm-mnist", help="gmm-mnist (exact reference) or another prior (diversity only)")
    a.add_argument("--task", required=True, help=f"one of: {', '.join(dmap.TASKS)}")
    a.add_argument("--pairs", type=int, default=32, help="test digits for the score error (32)")
    a.add_argument("--samples", type=int, default=16, help="restorations per method for the diversity (16)")
    a.add_argument("--nfe", type=int, default=1000, help="network evaluations per restoration (1000)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--json", action="store_true", help="print the JSON of every number")

    d = sub.add_parser("demo", help="restore bundled test digits on the five paper tasks with DPS and DMAP",
                       description="Restore bundled test digits on the tasks of the paper with DPS and DMAP on the "
                       "default prior; print a PSNR table and write demo.png.")
    d.add_argument("--images", type=int, default=8, help="number of test digits (8)")
    d.add_argument("--nfe", type=int, default=500, help="network evaluations per image (500: the demo stays under 5 minutes; the benchmarks use 1000)")
    d.add_argument("--prior", default=DEFAULT_PRIOR)
    d.add_argument("--out", default=".", help="folder for demo.png (current folder)")
    return p


def _check_prior_task_method(prior: str, task: str, method: str) -> None:
    for kind, name, table in (("prior", prior, PRIORS), ("task", task, dmap.TASKS), ("method", method, METHODS)):
        if name not in table and not (kind == "prior" and name.endswith(".safetensors")):
            raise UsageError(f"unknown {kind} {name!r}; choose from {', '.join(table)}"
                             + " or a .safetensors file" * (kind == "prior"))


def _out_dir(path: str) -> Path:
    """The output folder (created only once the work is done), refused if a file is there."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    return out


def _load_prior(name: str):
    try:
        return dmap.load_prior(name)
    except WeightsError as e:
        raise UsageError(str(e)) from None


def _load_cse(prior, task: str, path: str | None):
    """The adapter at ``path`` or the shipped one for (prior, task); ``ValueError`` if unusable."""
    from dmap.cse import find_cse, load_cse

    if not dmap.make_task(task, prior.shape).operator.linear:
        raise ValueError(f"the cse methods need a linear task; {task} is not")
    try:
        return load_cse(prior, path, task) if path else find_cse(prior, task)
    except WeightsError as e:
        raise ValueError(str(e)) from None


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=None, file=sys.stderr)


def _fit(x: torch.Tensor, shape: tuple[int, ...], resize: bool, path: Path, what: str) -> torch.Tensor:
    """Check (or, with --resize, convert) an image ``[C, H, W]`` against ``shape``."""
    if tuple(x.shape) == tuple(shape):
        return x
    if not resize:
        raise UsageError(f"{path}: image is {x.shape[0]} x {x.shape[1]} x {x.shape[2]} (C x H x W), "
                         f"{what} expects {shape[0]} x {shape[1]} x {shape[2]}; pass --resize to convert")
    if x.shape[0] != shape[0]:
        x = x.mean(0, keepdim=True).expand(shape[0], -1, -1) if shape[0] != 1 else x.mean(0, keepdim=True)
    return torch.nn.functional.interpolate(x[None], size=tuple(shape[1:]), mode="bilinear",
                                           align_corners=False, antialias=True)[0].clamp(-1, 1)


def cmd_list(args) -> int:
    for name, (_, desc) in PRIORS.items():
        print(f"prior   {name:16s} {desc}")
    for name, (_, desc) in dmap.TASKS.items():
        print(f"task    {name:16s} {desc}")
    for name, m in METHODS.items():
        print(f"method  {name:16s} {m.description}")
    return 0


def cmd_restore(args) -> int:
    _check_prior_task_method(args.prior, args.task, args.method)
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
        options = resolve_options(args.method, args.prior, args.task, guide=args.guide, **overrides)
        paths = list_images(args.inputs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    out = _out_dir(args.out)

    prior = _load_prior(args.prior)
    try:
        task = dmap.make_task(args.task, prior.shape, sigma_y=args.sigma_y, generator=seeded(args.seed))
        cse = _load_cse(prior, args.task, args.cse) if uses_cse else None
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
        images.append(_fit(x, target, args.resize, p, what))

    # every input and sample is one independent problem whose generators depend on the seed
    # and the image's content, so an image gives the same result alone or in a folder
    batch = torch.stack(images)
    keys = [int(hashlib.sha256(x.numpy().tobytes()).hexdigest()[:8], 16) for x in images]
    truth = None if args.observed else batch
    y = batch if args.observed else task.simulate(batch, generator=[seeded(args.seed, 1, k) for k in keys])
    items = [(i, k) for i in range(len(batch)) for k in range(args.samples)]
    results = torch.empty(len(items), *prior.shape)
    seconds = torch.empty(len(items))
    bar = _progress(options["steps"] * math.ceil(len(items) / args.batch_size), f"{args.method} {args.task}")
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


def cmd_train(args) -> int:
    from dmap.train import MNIST_ARCHITECTURE, train_prior

    if args.steps < 1 or args.batch_size < 1 or args.checkpoint_every < 1 or args.channels < 8 or args.lr <= 0:
        raise UsageError("--steps, --batch-size, --checkpoint-every must be >= 1, --channels >= 8, --lr > 0")
    if args.data:
        try:
            images = [load_image(p) for p in list_images([args.data])]
        except (ValueError, FileNotFoundError) as e:
            raise UsageError(str(e)) from None
        shapes = {tuple(x.shape) for x in images}
        if len(shapes) != 1:
            raise UsageError(f"{args.data}: images differ in shape ({', '.join(map(str, sorted(shapes)))})")
        data = torch.stack(images)
    else:
        data, _ = mnist("train")
    groups = min(8, args.channels)
    arch = {**MNIST_ARCHITECTURE, "channels": args.channels, "groups": groups}
    bar = _progress(args.steps, f"train {args.name}")
    try:
        weights = train_prior(data, args.out, name=args.name, architecture=arch, steps=args.steps,
                              batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              checkpoint_every=args.checkpoint_every,
                              progress=lambda step, loss: (bar.update(step - bar.n), bar.set_postfix(loss=f"{loss:.4f}")))
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    print(f"wrote {weights}")
    return 0


def cmd_train_cse(args) -> int:
    from dmap.priors import UNetPrior
    from dmap.train import train_cse

    _check_prior_task_method(args.prior, args.task, "dps+cse")
    if args.images < 1 or args.steps < 1 or args.batch_size < 1 or args.lr <= 0 or args.sigma_y < 0:
        raise UsageError("--images, --steps, --batch-size must be >= 1, --lr > 0, --sigma-y >= 0")
    out = Path(args.out)
    if out.suffix != ".safetensors" or out.is_dir():
        raise UsageError(f"--out {out}: give a file path ending in .safetensors")
    train, _ = mnist("train")
    if args.images > len(train):
        raise UsageError(f"--images {args.images}: the train split has {len(train)} digits")
    prior = _load_prior(args.prior)
    if not isinstance(prior, UNetPrior):
        raise UsageError(f"prior {args.prior} has no network to adapt; use a network prior such as mnist")
    if not dmap.make_task(args.task, prior.shape).operator.linear:
        raise UsageError(f"the conditional score estimator needs a linear task; {args.task} is not")
    data, ids = mnist_spread(args.images, "train")
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = _progress(args.steps, f"train-cse {args.task}")
    try:
        weights = train_cse(prior, args.task, data, ids.tolist(), out, sigma_y=args.sigma_y, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            progress=lambda step, loss: (bar.update(step - bar.n), bar.set_postfix(loss=f"{loss:.4f}")))
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    print(f"wrote {weights}")
    return 0


def cmd_sample(args) -> int:
    from dmap.figures import grid
    from dmap.rng import sample_generators
    from dmap.solvers.sample import sample_prior

    _check_prior_task_method(args.prior, PAPER_TASKS[0], "dps")
    if args.n < 1 or args.eta < 0:
        raise UsageError("-n must be >= 1 and --eta >= 0")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"--out {out}: give an image path ending in .png or .jpg")
    prior = _load_prior(args.prior)
    if not 1 <= args.steps <= prior.schedule.T:
        raise UsageError(f"--steps must be in [1, {prior.schedule.T}], got {args.steps}")
    bar = _progress(args.steps, f"sample {args.prior}")
    x = sample_prior(prior, args.n, steps=args.steps, eta=args.eta, generator=sample_generators(args.seed, args.n),
                     callback=lambda info: bar.update(1))
    bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = math.ceil(math.sqrt(args.n))
    grid([list(x[i : i + cols]) for i in range(0, args.n, cols)], out, cell=32, pad=1)
    if args.npz:
        import numpy as np

        np.savez_compressed(args.npz, samples=x.numpy(), prior=args.prior, steps=args.steps, seed=args.seed)
    print(f"wrote {out}")
    return 0


def cmd_analyze(args) -> int:
    from dmap.analysis.run import analyze, analysis_figures

    _check_prior_task_method(args.prior, args.task, "dps")
    if args.pairs < 1 or args.samples < 2 or args.nfe < 1:
        raise UsageError("--pairs and --nfe must be >= 1, --samples >= 2")
    out = _out_dir(args.out)
    prior = _load_prior(args.prior)
    task = dmap.make_task(args.task, prior.shape, generator=seeded(args.seed))
    x, ids = mnist_spread(args.pairs)
    y = task.simulate(x, generator=[seeded(args.seed, 1, int(i)) for i in ids])
    result, samples = analyze(prior, task, x, y, n_samples=args.samples, nfe=args.nfe, seed=args.seed,
                              progress=lambda msg: print(f"analyze: {msg}", file=sys.stderr, flush=True))
    result["test_ids"] = ids.tolist()
    out.mkdir(parents=True, exist_ok=True)
    analysis_figures(result, samples, x[0], task.operator.view(y[:1])[0], out)
    (out / "analysis.json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {out / 'analysis.json'} and figures")
    return 0


def cmd_demo(args) -> int:
    if args.images < 1 or args.nfe < 1:
        raise UsageError("--images and --nfe must be >= 1")
    _check_prior_task_method(args.prior, PAPER_TASKS[0], "dps")
    out = _out_dir(args.out)
    prior = _load_prior(args.prior)
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
            bar = _progress(opts["steps"], f"{method} {name}")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        commands = {"list": cmd_list, "restore": cmd_restore, "train": cmd_train, "train-cse": cmd_train_cse,
                    "sample": cmd_sample,
                    "analyze": cmd_analyze, "demo": cmd_demo}
        return commands[args.command](args)
    except UsageError as e:
        print(f"dmap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmap: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
