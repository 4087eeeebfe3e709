"""``dmap train``, ``dmap train-cse`` and ``dmap sample``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

import dmap
from dmap.cli.common import (
    DATA_HELP,
    OutputFolder,
    UsageError,
    add_device,
    add_prior,
    add_threads,
    check_names,
    device_name,
    file_name,
    finite,
    image_set_or_usage,
    load_prior_or_usage,
    nonnegative,
    positive_int,
    progress_bar,
)
from dmap.data import list_images, load_image, mnist, mnist_spread
from dmap.operators import DEFAULT_SIGMA_Y


def add_parsers(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train a diffusion prior (a small UNet) on the bundled digits or a folder",
        description="Train an epsilon-predicting UNet with EMA weights. Resumable: rerun the same "
        "command after an interruption. Writes OUT/NAME.safetensors, OUT/NAME.json, OUT/loss.csv and "
        "OUT/checkpoint.pt.",
    )
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument(
        "--latent",
        action="store_true",
        help="a latent prior: an AutoencoderKL (--ae-steps), then a UNet2DConditionModel on its latents (--steps), "
        "written as a diffusers folder OUT (vae/, unet/, scheduler/; needs dmap[diffusers])",
    )
    t.add_argument("--ae-steps", type=positive_int, default=4000, help="autoencoder steps of --latent (4000)")
    t.add_argument("--data", help="folder of training images (default: the bundled train digits)")
    t.add_argument("--name", type=file_name, default="prior", help="name of the weights file and of the prior (prior)")
    t.add_argument("--steps", type=int, default=12000, help="optimizer steps (12000)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    t.add_argument("--lr", type=finite, default=3e-4, help="Adam learning rate (3e-4)")
    t.add_argument("--channels", type=int, default=32, help="base channel count of the UNet (32)")
    t.add_argument("--seed", type=int, default=0, help="seed of init, batches, timesteps and noise (0)")
    t.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (500)")
    _add_training_device(t)
    t.set_defaults(func=cmd_train)

    _cse_parser(sub)
    _sd_embed_parser(sub)

    s = sub.add_parser(
        "sample",
        help="draw unconditional samples from a prior into an image grid",
        description="Sample the prior with the ancestral (DDPM) reverse process on respaced steps.",
    )
    add_prior(s)
    s.add_argument("-n", type=int, default=64, help="number of samples (64)")
    s.add_argument("--steps", type=int, default=250, help="reverse steps (250)")
    s.add_argument("--eta", type=finite, default=1.0, help="DDIM eta: 1 ancestral, 0 deterministic (1)")
    s.add_argument("--seed", type=int, default=0, help="seed (0)")
    s.add_argument("--out", required=True, help="grid image to write, e.g. grid.png")
    s.add_argument("--npz", help="also write the raw samples ([n, C, H, W] float32 in [-1, 1]) to this .npz")
    add_threads(s)
    add_device(s)
    s.set_defaults(func=cmd_sample)


def _cse_parser(sub) -> None:
    c = sub.add_parser(
        "train-cse",
        help="train a conditional score estimator (adapter) for a prior and a task",
        description="Train a ControlNet-style adapter on the frozen prior network from --images train "
        "digits evenly spaced over the train split (their indices are recorded in FILE's .json): "
        "epsilon-MSE on pairs (x, y = A(x) + n) with fresh noise, timestep and mask each batch. On a latent "
        "prior with a UNet2DConditionModel (Stable Diffusion) it is a diffusers ControlNet on the latents, "
        "its control image A^T (A A^T + sigma_y^2 I)^-1 y, saved in the folder PATH. "
        "Resumable: checkpoints go to PATH without its suffix plus .run/.",
    )
    add_prior(c)
    c.add_argument("--task", required=True, help="a linear task, e.g. sr4, inpaint-box (see dmap list)")
    c.add_argument("--images", type=int, default=100, help="training images (100, the paper's setting)")
    c.add_argument("--data", metavar="SOURCE", help=DATA_HELP.replace("bundled digits", "train digits"))
    c.add_argument("--steps", type=int, default=1500, help="optimizer steps (1500)")
    c.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    c.add_argument("--lr", type=finite, default=2e-4, help="Adam learning rate (2e-4)")
    c.add_argument(
        "--sigma-y",
        type=nonnegative,
        default=DEFAULT_SIGMA_Y,
        help=f"measurement noise std in [-1, 1] units ({DEFAULT_SIGMA_Y}); the adapter serves only this level",
    )
    c.add_argument(
        "--condition",
        choices=["regularized", "pinv"],
        default="regularized",
        help="how y enters a pixel adapter: A^T (A A^T + sigma_y^2 I)^-1 y (regularized) or A^+ y (pinv)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of init, batches, masks and noise (0)")
    c.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="adapter to write: FILE.safetensors (pixel prior) or a FOLDER (ControlNet of a latent prior)",
    )
    _add_training_device(c)
    c.set_defaults(func=cmd_train_cse)


def _add_training_device(parser) -> None:
    add_threads(parser)
    parser.add_argument(
        "--device",
        type=device_name,
        help="where training runs: cpu, cuda, cuda:1 (cpu). Data parallel: torchrun "
        "--nproc-per-node N -m dmap ... trains one model in N processes (with cuda one GPU each), "
        "each on 1/N of every batch",
    )


def _training_device(args) -> str:
    """This process's device, after joining a ``torchrun`` process group (:mod:`dmap.parallel`)."""
    from dmap.parallel import init_data_parallel, rank_world

    try:
        device = init_data_parallel(args.device) or "cpu"
        torch.empty(0, device=device)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--device {args.device}: {str(e).splitlines()[0]}") from None
    if args.batch_size % rank_world()[1]:
        raise UsageError(f"--batch-size {args.batch_size} must be a multiple of the {rank_world()[1]} torchrun processes")
    return device


def _sd_embed_parser(sub) -> None:
    e = sub.add_parser(
        "sd-embed",
        help="store the empty-prompt text embedding of a Stable Diffusion folder (needs transformers)",
        description="Encode the prompt (default: empty, the paper's setting) with FOLDER's tokenizer/ and "
        "text_encoder/ as diffusers' Stable Diffusion pipelines do; --prior sd=FOLDER then runs without the text "
        "encoder.",
    )
    e.add_argument("folder", metavar="FOLDER", help="a local Stable Diffusion folder")
    e.add_argument("--prompt", default="", help="the prompt (empty)")
    e.add_argument("--out", metavar="FILE", help="where to write it (FOLDER/prompt_embedding.safetensors)")
    add_threads(e)
    e.set_defaults(func=cmd_sd_embed)


def cmd_sd_embed(args) -> int:
    from dmap.priors.latent import prompt_embedding
    from dmap.utils import WeightsError, save_safetensors

    out = Path(args.out) if args.out else Path(args.folder) / "prompt_embedding.safetensors"
    try:
        emb = prompt_embedding(args.folder, args.prompt)
    except (WeightsError, OSError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    save_safetensors(out, {"embedding": emb}, metadata={"prompt": args.prompt})
    print(f"wrote {out} (embedding {list(emb.shape)})")
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
    device = _training_device(args)
    OutputFolder.prepare(args.out)
    if args.latent:
        try:
            from dmap.train_latent import train_latent_prior
        except ImportError:
            raise UsageError("--latent needs diffusers: pip install 'dmap[diffusers]'") from None
        return _run_training(
            train_latent_prior,
            "train latent prior",
            data,
            args.out,
            steps=args.steps,
            total=args.ae_steps + args.steps,
            ae_steps=args.ae_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            device=device,
        )
    arch = MNIST_ARCHITECTURE.replace(channels=args.channels, groups=min(8, args.channels))
    return _run_training(
        train_prior,
        f"train {args.name}",
        data,
        args.out,
        name=args.name,
        architecture=arch,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=device,
    )


def _run_training(train: Callable[..., Path], desc: str, *args, steps: int, total: int | None = None, **kwargs) -> int:
    """Run ``train(*args, steps=steps, progress=..., **kwargs)`` under a progress bar of
    ``total`` (default ``steps``) steps (rank 0's, under torchrun)."""
    from dmap.parallel import is_main

    bar = progress_bar(total or steps, desc, show=is_main())
    last = {}

    def progress(step: int, loss: float) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}")
        last["loss"] = loss

    try:
        weights = train(*args, steps=steps, **kwargs, progress=progress)
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    if is_main():
        print(f"wrote {weights}" + (f" (last batch loss {last['loss']:.4f})" if last else " (already trained: nothing to do)"))
    return 0


def cmd_train_cse(args) -> int:
    from dmap.cse import check_adaptable
    from dmap.cse.controlnet import controllable
    from dmap.train import train_cse

    check_names(args.prior, args.task)
    if args.images < 1 or args.steps < 1 or args.batch_size < 1 or args.lr <= 0 or args.sigma_y < 0:
        raise UsageError("--images, --steps, --batch-size must be >= 1, --lr > 0, --sigma-y >= 0")
    out = Path(args.out)
    if not args.data and args.images > len(mnist("train")[0]):
        raise UsageError(f"--images {args.images}: the train split has {len(mnist('train')[0])} digits")
    args.device = _training_device(args)
    prior = load_prior_or_usage(args.prior, args)
    try:
        check_adaptable(prior)
    except ValueError as e:
        raise UsageError(str(e)) from None
    latent = controllable(prior)
    if latent and (out.suffix == ".safetensors" or out.is_file()):
        raise UsageError(f"--out {out}: the estimator of a latent prior (a ControlNet) is a folder; give a folder path")
    if not latent and (out.suffix != ".safetensors" or out.is_dir()):
        raise UsageError(f"--out {out}: give a file path ending in .safetensors")
    if not dmap.make_task(args.task, prior.image_shape).operator.linear:
        raise UsageError(f"the conditional score estimator needs a linear task; {args.task} is not")
    data, ids = image_set_or_usage(args.data, args.images, prior.image_shape) if args.data else mnist_spread(args.images, "train")
    OutputFolder.prepare(out.parent)
    return _run_training(
        train_cse,
        f"train-cse {args.task}",
        prior,
        args.task,
        data,
        ids.tolist(),
        out,
        sigma_y=args.sigma_y,
        condition=args.condition,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )


def cmd_sample(args) -> int:
    from dmap.figures import grid
    from dmap.rng import sample_generators
    from dmap.solvers.sample import sample_prior

    check_names(args.prior)
    if args.n < 1 or args.eta < 0:
        raise UsageError("-n must be >= 1 and --eta >= 0")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"--out {out}: give an image path ending in .png or .jpg")
    OutputFolder.prepare(out.parent)
    prior = load_prior_or_usage(args.prior, args)
    if not 1 <= args.steps <= prior.schedule.T:
        raise UsageError(f"--steps must be in [1, {prior.schedule.T}], got {args.steps}")
    bar = progress_bar(args.steps, f"sample {args.prior}")
    x = sample_prior(
        prior,
        args.n,
        steps=args.steps,
        eta=args.eta,
        generator=sample_generators(args.seed, args.n),
        callback=lambda info: bar.update(1),
    ).cpu()
    bar.close()
    cols = math.ceil(math.sqrt(args.n))
    grid([list(x[i : i + cols]) for i in range(0, args.n, cols)], out, cell=32, pad=1)
    if args.npz:
        import numpy as np

        np.savez_compressed(args.npz, samples=x.numpy(), prior=args.prior, steps=args.steps, seed=args.seed)
    print(f"wrote {out}" + f" and {args.npz}" * bool(args.npz) + f" ({args.n} samples of {args.prior}, {args.steps} steps)")
    return 0
