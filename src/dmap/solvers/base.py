"""The registry of methods and the typed options every method declares.

A method is one solver file: a frozen :class:`Options` dataclass (defaults, validation,
which option ``dmap tune`` searches and on which grid, the cost in network evaluations)
and a call to :func:`register`.  Presets, the CLI, ``tune`` and ``bench`` read everything
else from here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from dmap.config import Config, ConfigError
from dmap.schedule import SPACINGS, Schedule


def tunable(default: float, grid: tuple[float, ...], refine: tuple[float, ...]) -> Any:
    """A field that ``dmap tune`` searches: a coarse log ``grid``, then ``refine`` factors
    around the best value."""
    return field(default=default, metadata={"grid": grid, "refine": refine})


def choices(default: int, values: tuple[int, ...]) -> Any:
    """An integer field that ``dmap tune`` tries each of ``values`` for (e.g. DMAP's K)."""
    return field(default=default, metadata={"choices": values})


@dataclass(frozen=True)
class Options(Config):
    """Options shared by every method: ``steps`` reverse steps (N) on the time grid
    ``spacing`` (``uniform`` or ``quadratic``, :meth:`dmap.schedule.Schedule.timesteps`).
    Subclasses add theirs and extend :meth:`check`."""

    steps: int = 1000
    spacing: str = "uniform"

    step_evals: ClassVar[int] = 1  # network evaluations of one outer step (without inner steps)
    # what the method needs of the measurement: "linear" (A^T, pinv), "svd", "gaussian"
    # noise, "cse" (a conditional score estimator, hence a linear task and Gaussian noise)
    needs: ClassVar[tuple[str, ...]] = ()
    # the options the paper's equal-steps protocol fixes (DMAP: K = 3)
    paper_protocol: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        try:
            self.check()
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None

    def check(self) -> None:
        """Validate the values (``ValueError`` naming the option)."""
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {self.spacing!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{f.name.replace('_', ' ')} must be a finite number >= 0, got {v}")
            if "choices" in f.metadata and not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{f.name.replace('_', ' ')} must be an integer >= 1, got {v}")

    def grid(self, schedule: Schedule) -> Tensor:
        """The time grid ``tau_N > ... > tau_1`` of these options on ``schedule`` (int64 ``[N]``;
        :meth:`dmap.schedule.Schedule.timesteps`), the data every sampler steps along."""
        return torch.tensor(schedule.timesteps(self.steps, self.spacing), dtype=torch.int64)

    @property
    def inner(self) -> int:
        """Inner evaluations per step after the first (DMAP's K; 0 for the others)."""
        return 0

    def nfe(self) -> int:
        """Network evaluations per image: a forward+backward pass counts one."""
        return self.steps * self.step_evals + (self.steps - 1) * self.inner

    def for_budget(self, nfe: int) -> Options:
        """These options with the most steps whose cost is at most ``nfe`` evaluations."""
        return self.replace(steps=max(1, (nfe + self.inner) // (self.step_evals + self.inner)))

    @classmethod
    def strength(cls) -> str | None:
        """The option that ``dmap tune`` searches on a grid (step size, guidance rate)."""
        return next((f.name for f in dataclasses.fields(cls) if "grid" in f.metadata), None)

    @classmethod
    def keyed(cls) -> dict[str, Any]:
        """The fields declared with ``choices`` (DMAP's K) and their defaults: a preset holds
        one entry per value of these, since the strength tuned at one does not hold at another."""
        return {f.name: f.default for f in dataclasses.fields(cls) if "choices" in f.metadata}


@dataclass(frozen=True)
class ReverseOptions(Options):
    """Options of the methods built on the DDIM(eta) reverse step: ``eta`` (1: ancestral
    DDPM, 0: deterministic DDIM)."""

    eta: float = 1.0


@dataclass(frozen=True)
class ParticleOptions(Options):
    """Options of the sequential Monte Carlo samplers: ``particles`` (P) per measurement, each
    one network evaluation per step (``P N`` evaluations per sample)."""

    particles: int = 16

    @property
    def step_evals(self) -> int:
        return self.particles

    def check(self) -> None:
        super().check()
        if not (isinstance(self.particles, int) and self.particles >= 1):
            raise ValueError(f"particles must be an integer >= 1, got {self.particles}")


GUIDANCE = ("time", "constant")


@dataclass(frozen=True)
class GuidanceOptions(ReverseOptions):
    """Options of the methods guided by the likelihood gradient (DPS, DSG, DMAP): how their
    strength spreads over the steps (``guidance``) and ``clamp`` (clip x0_hat to [-1, 1]
    before A, as the DPS reference code does).

    ``guidance="time"`` (default): the strength is per unit of diffusion time, and the step
    ``t -> t'`` covers ``t - t'`` units (:meth:`units`) of the schedule's T steps, so one
    setting holds at any number of steps; at the full T-step schedule it is the published
    per-step value.  ``guidance="constant"``: every step gets the same strength, the
    published parametrization (retune it whenever the number of steps changes)."""

    guidance: str = "time"
    clamp: bool = True

    def check(self) -> None:
        super().check()
        if self.guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {', '.join(GUIDANCE)}, got {self.guidance!r}")

    def units(self, t: int, t_prev: int) -> int:
        """Units of diffusion time of the step ``t -> t_prev`` (``t_prev = -1``: the clean image)."""
        return t - t_prev if self.guidance == "time" else 1


@dataclass(frozen=True)
class StepSizeOptions(GuidanceOptions):
    """A step size ``step_size`` (zeta) along the likelihood gradient (DPS, DMAP): the step
    ``t -> t'`` uses ``zeta_i = zeta * units(t, t')`` (``zeta (t - t')``, an Euler step of
    the guidance flow, whose step sizes add up to ``zeta T`` at any number of steps; with
    ``guidance="constant"``, the DPS paper's ``zeta_i = zeta``)."""

    step_size: float = tunable(1.0, grid=(0.1, 0.3, 1.0, 3.0, 10.0), refine=(0.58, 1.73))

    def zeta(self, t: int, t_prev: int) -> float:
        """The step size ``zeta_i`` of the step ``t -> t_prev``."""
        return self.step_size * self.units(t, t_prev)


@dataclass(frozen=True)
class Method:
    """A registered method: its sampler ``fn(denoiser, physics, y, grid, options, *,
    generator, callback)`` (the one signature of every method), its options class (which
    says what it needs) and a description."""

    name: str
    fn: Callable[..., Tensor]
    options: type[Options]
    description: str
    base: str | None = None  # the method whose presets this one starts from (all but ``steps``)

    @property
    def uses_cse(self) -> bool:
        """Whether the denoiser must be the prior conditioned by an estimator."""
        return "cse" in self.options.needs


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (one call at the end of each solver file)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
