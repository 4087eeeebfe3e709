"""What a benchmark runs: method specs (``dmap[step_size=2,inner_steps=5]``) and the
:class:`BenchConfig` saved in its manifest."""

from __future__ import annotations

from dataclasses import dataclass, field

from dmap.config import Config, parse_assignments
from dmap.operators import DEFAULT_SIGMA_Y, TASKS
from dmap.solvers import METHODS

PROTOCOLS = ("equal-nfe", "equal-steps")


class BenchError(ValueError):
    """A benchmark that cannot run as asked (bad spec, mismatched rerun)."""


def split_specs(text: str) -> list[str]:
    """Split ``"dps,dps+cse[guide=cse,step_size=2]"`` at the commas outside brackets."""
    specs, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            specs.append(cur.strip())
            cur = ""
        else:
            cur += ch
    specs.append(cur.strip())
    return [s for s in specs if s]


def parse_method(spec: str) -> tuple[str, dict, str | None]:
    """``"dps+cse[guide=cse,cse=FILE]"`` -> ``("dps+cse", {"guide": "cse"}, "FILE")``: the
    method, option overrides and an adapter path (``cse=``)."""
    name, _, rest = spec.partition("[")
    if rest and not rest.endswith("]"):
        raise BenchError(f"method {spec!r}: options go in one pair of brackets, e.g. dmap[step_size=2]")
    if name not in METHODS:
        raise BenchError(f"unknown method {name!r} in {spec!r}; choose from {', '.join(METHODS)}")
    try:
        options = parse_assignments(split_specs(rest[:-1]) if rest else [], f"method {spec!r}")
    except ValueError as e:
        raise BenchError(str(e)) from None
    cse = options.pop("cse", None)
    if cse is not None and not METHODS[name].uses_cse:
        raise BenchError(f"method {spec!r}: {name} takes no conditional score estimator")
    if "steps" in options:
        raise BenchError(f"method {spec!r}: steps follow from the budget (--nfe, --steps)")
    return name, options, cse


METRICS = ("lpips-alex", "lpips-vgg", "fid")  # fid: FID and KID


@dataclass(frozen=True)
class BenchConfig(Config):
    """What to run.  ``methods`` are specs (:func:`parse_method`); ``nfe`` the budgets:
    under ``protocol="equal-nfe"`` network evaluations per image (each method's steps are
    the most that fit), under ``"equal-steps"`` (the paper's protocol) reverse steps, the
    same for every method (the evaluations they cost are recorded per cell; DMAP's K is
    the paper's 3 unless a spec sets it);
    ``threads`` the torch threads of every worker (results depend on it, bit for bit);
    ``data`` images to use instead of the bundled digits: a folder, a text file listing
    paths, or ``photos`` (:mod:`dmap.imageset`; ``split`` then does not apply) fitted
    to ``resolution`` (default: the prior's size); ``dtype`` the precision of the network; ``kernel`` / ``mask`` files
    replacing the blur kernel / inpainting mask of the tasks that take one; ``grad_checkpointing``,
    ``decoder_slicing``, ``channels_last`` the memory options of :func:`dmap.load_prior`; ``metrics`` the
    perceptual scores to add (:data:`METRICS`) with their weights from the folder
    ``metric_weights`` (default ``$DMAP_METRIC_WEIGHTS``)."""

    prior: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    images: int
    nfe: tuple[int, ...] = (1000,)
    split: str = "test"
    seed: int = 0
    sigma_y: float = DEFAULT_SIGMA_Y
    batch_size: int = 16
    presets: str | None = None
    threads: int = 1
    data: str | None = None
    dtype: str = "float32"
    kernel: str | None = None
    mask: str | None = None
    protocol: str = "equal-nfe"
    samples: int = 1
    draws: int = 1
    resolution: int | None = None
    grad_checkpointing: bool = False
    decoder_slicing: bool = False
    channels_last: bool = False
    metric_weights: str | None = None
    metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise BenchError(f"unknown protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if min(self.images, self.batch_size, self.threads, self.samples, self.draws, min(self.nfe, default=0)) < 1:
            raise BenchError("--images, --batch-size, --threads, --samples, --draws and every --nfe must be >= 1")
        if not (self.tasks and self.methods and self.nfe):
            raise BenchError("give at least one task, method and budget")
        for name in self.tasks:
            if name not in TASKS:
                raise BenchError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        for spec in self.methods:
            parse_method(spec)
        for m in self.metrics:
            if m not in METRICS:
                raise BenchError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
        for what, path in (("kernel", self.kernel), ("mask", self.mask)):
            if path and not any(TASKS[t].takes == what for t in self.tasks):
                raise BenchError(f"--{what} {path}: none of the tasks takes a {what}")
        for kind, values in (("task", self.tasks), ("method", self.methods), ("budget", self.nfe)):
            if len(set(values)) != len(values):
                raise BenchError(f"a {kind} is listed twice")

    def expected_rows(self) -> int:
        return len(self.tasks) * len(self.methods) * len(self.nfe) * self.images * self.draws


def cse_path(spec: str, task: str) -> str | None:
    """The adapter path of a method spec (``cse=PATH``) for ``task``: ``{task}`` in it is
    replaced by the task's name, so one spec serves a grid of tasks."""
    path = parse_method(spec)[2]
    return path.replace("{task}", task) if path else None


@dataclass
class Unit:
    """One batch of work: images at positions ``index`` of one (task, method, nfe), under
    operator draw ``draw`` (0: the benchmark's own; see :func:`draw_key`)."""

    task: str
    method: str
    nfe: int
    batch: int
    index: list[int] = field(default_factory=list)
    draw: int = 0


def units(config: BenchConfig) -> list[Unit]:
    """Every batch of the grid in a fixed order."""
    chunks = [list(range(s, min(s + config.batch_size, config.images))) for s in range(0, config.images, config.batch_size)]
    grid = [(t, m, n) for t in config.tasks for m in config.methods for n in config.nfe]
    return [Unit(t, m, n, j, c, d) for t, m, n in grid for d in range(config.draws) for j, c in enumerate(chunks)]


DRAW = 7919  # (a tag: the seeds of draw d > 0 carry (DRAW, d), those of draw 0 nothing, as before draws existed)


def draw_key(draw: int) -> tuple[int, ...]:
    """What draw ``draw`` adds to the seeds of the operator, the noise and the sampler."""
    return (DRAW, draw) if draw else ()
