"""Pieces shared by the subcommands: one-line usage errors, argument types and checks,
the output folder, threads and loading.

Exit codes (every subcommand): 0 success; 1 the solve failed (NaN/Inf or a diverged
restoration; the message names the step size to change); 2 bad input (usage, a missing
or mismatched file, an unwritable folder: one line, nothing written); 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

import dmap
from dmap.catalogue import DEFAULT_PRIOR, PRIOR_FORMS, PRIORS, prior_form
from dmap.config import parse_assignments
from dmap.progress import progress_bar  # noqa: F401  (re-exported for the subcommands)
from dmap.solvers import METHODS
from dmap.utils import WeightsError, plain_name

EXIT_CODES = (
    "exit codes: 0 success; 1 the solve failed (NaN/Inf or a diverged restoration: lower the step size); "
    "2 bad input (one line, nothing written); 130 interrupted"
)
THREADS_HELP = (
    "torch threads (default 1: on the 32 x 32 priors a second thread gains ~1.3x on an idle machine "
    "and loses ~3x when another process keeps a core busy)"
)
PRIOR_HELP = f"one of: {', '.join([*PRIORS, *PRIOR_FORMS])} (default {DEFAULT_PRIOR}; see dmap list)"


class UsageError(Exception):
    """Bad input: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v


def nonnegative(text: str) -> float:
    v = finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def budget_list(text: str) -> tuple[int, ...]:
    """``"100,250,1000"`` -> ``(100, 250, 1000)``: positive integers, none twice (argparse type)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by commas") from None
    if min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by commas, none twice")
    return values


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def file_name(text: str) -> str:
    """A plain file name, no folders (argparse type; :func:`dmap.utils.plain_name`)."""
    try:
        return plain_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_float(text: str) -> float:
    v = finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def task_from_args(args: argparse.Namespace, shape: tuple[int, ...]):
    """The task of ``--task`` with ``--kernel``, ``--mask``, ``--photons``, ``--sigma-y`` and
    ``--seed``; :class:`UsageError` naming the problem."""
    from dmap.data import load_kernel, load_mask
    from dmap.operators import GaussianNoise, PoissonGaussianNoise, PoissonNoise
    from dmap.rng import seeded

    photons = getattr(args, "photons", None)
    if photons is None:
        noise = GaussianNoise(args.sigma_y)
    else:
        noise = PoissonGaussianNoise(photons, args.sigma_y) if args.sigma_y > 0 else PoissonNoise(photons)
    kernel = _load_file("--kernel", load_kernel, getattr(args, "kernel", None))
    mask = _load_file("--mask", load_mask, getattr(args, "mask", None))
    try:
        return dmap.make_task(args.task, shape, noise=noise, generator=seeded(args.seed), kernel=kernel, mask=mask)
    except ValueError as e:
        where = f"--kernel {args.kernel}: " if kernel is not None else f"--mask {args.mask}: " if mask is not None else ""
        raise UsageError(f"{where}{e}") from None


def _load_file(flag: str, loader, path: str | None):
    """``loader(path)`` (None without a path); its error, which names the file, as a :class:`UsageError`."""
    if not path:
        return None
    try:
        return loader(path)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"{flag} {e}") from None


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=1, help=THREADS_HELP)


def add_prior(parser: argparse.ArgumentParser, default: str = DEFAULT_PRIOR, embedding: bool = True) -> None:
    """``--prior`` and (``embedding``) ``--prompt-embedding``."""
    parser.add_argument("--prior", default=default, help=PRIOR_HELP.replace(f"default {DEFAULT_PRIOR}", f"default {default}"))
    add_memory_options(parser)
    if embedding:  # (bench records its prior in its manifest: there the folder's own embedding file serves)
        parser.add_argument(
            "--prompt-embedding",
            metavar="FILE",
            help="empty-prompt embedding of --prior sd=FOLDER (FOLDER/prompt_embedding.safetensors)",
        )


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    """Memory and speed of diffusers priors (measured effect: benchmarks/sd_speed.py, docs/latent.md)."""
    parser.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute a diffusers network's activations in the backward pass: less memory "
        "for the likelihood gradient (latent priors at 512 px), about one forward pass more",
    )
    parser.add_argument(
        "--decoder-slicing",
        action="store_true",
        help="a latent prior decodes the images of a batch one at a time: the decoder's peak memory of one image",
    )
    parser.add_argument("--channels-last", action="store_true", help="networks in NHWC memory format (faster on some GPUs)")


def device_name(text: str) -> str:
    """``--device``: a device that this torch has and this machine shows (argparse type)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, but no GPU is visible"
            )
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device (torch {torch.__version__} is {build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine shows {torch.cuda.device_count()} CUDA devices")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no MPS device here; use --device cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: dmap runs on cpu, cuda or mps")
    return text


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, help="where the network runs: cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="precision of the network (autocast); the solver's arithmetic stays float32 (float32)",
    )


def check_names(prior: str | None = None, task: str | None = None, method: str | None = None) -> None:
    """Refuse an unknown prior, task or method, naming the choices."""
    if prior is not None:
        try:
            prior_form(prior)
        except ValueError as e:
            raise UsageError(str(e)) from None
    for kind, name, table in (("task", task, dmap.TASKS), ("method", method, METHODS)):
        if name is not None and name not in table:
            raise UsageError(f"unknown {kind} {name!r}; choose from {', '.join(table)}")


def option_overrides(items: list[str] | None) -> dict:
    """``--option KEY=VALUE`` arguments as a dict."""
    try:
        return parse_assignments(items or [], "--option")
    except ValueError as e:
        raise UsageError(str(e)) from None


class OutputFolder:
    """The output folder, made before any work so that an unwritable path is refused
    first; :meth:`discard` removes it again (if this run made it and left it empty)."""

    made: list[Path] = []

    @classmethod
    def prepare(cls, path: str | Path, flag: str = "--out") -> Path:
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise UsageError(f"{flag} {out}: exists and is not a folder")
        missing = [p for p in [out, *out.parents] if not p.exists()]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{flag} {out}: cannot create the folder ({e.strerror})") from None
        cls.made.extend(missing)
        if not os.access(out, os.W_OK):
            raise UsageError(f"{flag} {out}: the folder is not writable")
        return out

    @classmethod
    def discard(cls) -> None:
        for p in cls.made:
            try:
                p.rmdir()
            except OSError:
                pass
        cls.made.clear()


def load_prior_or_usage(name: str, args: argparse.Namespace | None = None):
    """The prior ``name`` on ``args.device`` with ``args.dtype`` (when the command has them)."""
    device, dtype = getattr(args, "device", None), getattr(args, "dtype", None)
    try:
        return dmap.load_prior(
            name,
            device=device,
            dtype=dtype,
            prompt_embedding=getattr(args, "prompt_embedding", None),
            gradient_checkpointing=getattr(args, "grad_checkpointing", False),
            decoder_slicing=getattr(args, "decoder_slicing", False),
            channels_last=getattr(args, "channels_last", False),
        )
    except (WeightsError, ValueError) as e:
        raise UsageError(str(e)) from None
    except RuntimeError as e:  # e.g. an unavailable device
        raise UsageError(f"prior {name} on device {device}: {str(e).splitlines()[0]}") from None


def check_suited(method: str, task, options=None, prior=None) -> None:
    """:class:`UsageError` when ``method`` cannot solve ``task`` (with ``options`` on
    ``prior``'s schedule, if given; :func:`dmap.api.unsuited`)."""
    from dmap.api import unsuited

    reason = unsuited(method, task, options, prior)
    if reason:
        raise UsageError(reason)


def load_cse_or_usage(prior, task, path: str | None):
    """The adapter at ``path`` or the shipped one for (prior, task), checked against the
    task's noise level; :class:`UsageError` if unusable (call :func:`check_suited` first)."""
    from dmap.catalogue import get_cse

    try:
        return get_cse(prior, task.name, path, sigma_y=task.sigma_y)
    except ValueError as e:
        raise UsageError(str(e)) from None


def fit_image(x: torch.Tensor, shape: tuple[int, ...], resize: bool, path: Path, what: str) -> torch.Tensor:
    """Check (or, with --resize, convert and say so on stderr) an image ``[C, H, W]``
    against ``shape``."""
    if tuple(x.shape) == tuple(shape):
        return x
    if not resize:
        raise UsageError(
            f"{path}: image is {x.shape[0]} x {x.shape[1]} x {x.shape[2]} (C x H x W), "
            f"{what} expects {shape[0]} x {shape[1]} x {shape[2]}; pass --resize to convert"
        )
    note = []
    if x.shape[0] != shape[0]:
        note.append(
            f"{'colour' if x.shape[0] == 3 else f'{x.shape[0]}-channel'} to {'grey' if shape[0] == 1 else f'{shape[0]} channels'}"
        )
        x = x.mean(0, keepdim=True).expand(shape[0], -1, -1) if shape[0] != 1 else x.mean(0, keepdim=True)
    if tuple(x.shape[1:]) != tuple(shape[1:]):
        note.append(f"resized {x.shape[1]} x {x.shape[2]} to {shape[1]} x {shape[2]}")
        x = torch.nn.functional.interpolate(x[None], size=tuple(shape[1:]), mode="bilinear", align_corners=False, antialias=True)[
            0
        ].clamp(-1, 1)
    print(
        f"dmap: note: {path}: converted ({', '.join(note)}) for {what}; the result is only as meaningful as "
        f"the prior is for this image",
        file=sys.stderr,
    )
    return x


def add_metric_options(parser: argparse.ArgumentParser, choices: tuple[str, ...], default: tuple[str, ...]) -> None:
    """``--metric-weights DIR`` and ``--metrics LIST``: perceptual scores from local weight files."""
    parser.add_argument(
        "--metric-weights",
        metavar="DIR",
        help="folder of the weight files of LPIPS / FID (torchvision's, lpips's and pytorch-fid's files under their "
        "published names; docs/metrics.md); turns on --metrics " + ",".join(default) + "; nothing is downloaded",
    )
    parser.add_argument(
        "--metrics",
        type=lambda text: _metric_list(text, choices),
        help=f"perceptual scores, comma-separated from: {', '.join(choices)}"
        + (" (fid: FID and KID)" if "fid" in choices else "")
        + "; the weights from --metric-weights or $DMAP_METRIC_WEIGHTS",
    )
    parser.set_defaults(default_metrics=default)


def _metric_list(text: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(v for v in text.split(",") if v)
    bad = [v for v in values if v not in choices]
    if bad or not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give metrics from {', '.join(choices)}, comma-separated, none twice")
    return values


def chosen_metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """``--metrics``, else the defaults when ``--metric-weights`` is given, else none."""
    return args.metrics or (args.default_metrics if args.metric_weights else ())


DATA_HELP = (
    "images instead of the bundled digits: a FOLDER (sorted by name), a text file listing image paths, or "
    "'photos' (the photographs of the scikit-image / scikit-learn wheels: pip install 'dmap[photos]'); the first "
    "--images of them, fitted to the prior (its channels; centre crop and antialiased resize)"
)


def image_set_or_usage(source: str, n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of ``source`` fitted to ``shape`` and their ids; a notice per
    conversion; :class:`UsageError` naming a missing, unreadable or duplicate file."""
    from dmap.imageset import image_set

    try:
        found = image_set(source, n, shape)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--data {source}: {e}") from None
    for note in found.notes:
        print(f"dmap: note: {note}", file=sys.stderr)
    return found.x, found.ids
