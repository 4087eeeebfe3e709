"""Pieces shared by the subcommands: one-line usage errors, argument checks, loading."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import dmap
from dmap.priors import PRIORS, WeightsError
from dmap.progress import progress_bar  # noqa: F401  (re-exported for the subcommands)
from dmap.solvers import METHODS

PAPER_TASKS = ["inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2"]


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


def check_prior_task_method(prior: str, task: str, method: str) -> None:
    for kind, name, table in (("prior", prior, PRIORS), ("task", task, dmap.TASKS), ("method", method, METHODS)):
        if name not in table and not (kind == "prior" and name.endswith(".safetensors")):
            raise UsageError(f"unknown {kind} {name!r}; choose from {', '.join(table)}"
                             + " or a .safetensors file" * (kind == "prior"))


def out_dir(path: str) -> Path:
    """The output folder (created only once the work is done), refused if a file is there."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    return out


def load_prior_or_usage(name: str):
    try:
        return dmap.load_prior(name)
    except WeightsError as e:
        raise UsageError(str(e)) from None


def load_cse_or_error(prior, task: str, path: str | None):
    """The adapter at ``path`` or the shipped one for (prior, task); ``ValueError`` if unusable."""
    from dmap.cse import get_cse

    if not dmap.make_task(task, prior.shape).operator.linear:
        raise ValueError(f"the cse methods need a linear task; {task} is not")
    try:
        return get_cse(prior, task, path)
    except WeightsError as e:
        raise ValueError(str(e)) from None


def fit_image(x: torch.Tensor, shape: tuple[int, ...], resize: bool, path: Path, what: str) -> torch.Tensor:
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

