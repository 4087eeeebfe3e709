"""The benchmark runner: a (task, method, budget, image) grid solved in fixed batches,
each result appended to the store (:mod:`dmap.bench.store`) the moment its batch finishes.

Reproducibility: the images are ``mnist_spread(images, split)`` (ids in the manifest);
masks / kernels / permutations come from ``seeded(seed)``, the measurement noise of image
``i`` from ``seeded(seed + 1, i)`` and its sampler from ``seeded(seed + 2, i)``.  Batches
are fixed chunks of the image list and every worker runs ``config.threads`` torch
threads, so a rerun, another worker count or a resumed run solves the same batches with
the same arithmetic, bit for bit.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import platform
import resource
import sys
import time
from functools import cached_property
from pathlib import Path

import torch

import dmap
from dmap.api import run_method, unsuited
from dmap.bench.quality import Perceptual
from dmap.bench.specs import DRAW, BenchConfig, BenchError, Unit, cse_path, draw_key, parse_method, units
from dmap.bench.store import MANIFEST, append_rows, cell_key, outputs_path, read_store, row_key, save_outputs, write_store
from dmap.data import load_kernel, load_mask, mnist_spread
from dmap.imageset import ImageSet, image_set
from dmap.metrics import psnr, ssim
from dmap.operators.tasks import Task
from dmap.presets import PresetError, load_presets, resolve_options, select
from dmap.priors.base import fingerprint
from dmap.rng import seeded
from dmap.solvers import Options
from dmap.solvers.common import SolveError, residual_rms
from dmap.utils import short_sha256, write_json_atomic


class Bench:
    """A benchmark in folder ``out``.  The prior, tasks, adapters and manifest are built
    when first needed, not when the bench is opened."""

    def __init__(self, config: BenchConfig, out: str | Path, device: str = "cpu") -> None:
        self.config = config
        self.out = Path(out)
        self.device = torch.device(device)
        self._tasks: dict[str, tuple[Task, torch.Tensor]] = {}
        self._cse: dict[tuple, object] = {}

    @cached_property
    def images(self) -> ImageSet | None:
        """The images of ``--data`` fitted to the prior (None for the bundled digits)."""
        c = self.config
        if not c.data:
            return None
        try:
            found = image_set(c.data, c.images, self.prior.image_shape, c.resolution)
        except (ValueError, FileNotFoundError) as e:
            raise BenchError(f"--data {c.data}: {e}") from None
        for note in found.notes:
            print(f"dmap: note: {note}", file=sys.stderr)
        return found

    @cached_property
    def x(self) -> torch.Tensor:
        """The ground-truth images ``[N, C, H, W]`` in [-1, 1]."""
        return self.images.x if self.images else self._digits[0]

    @cached_property
    def ids(self) -> list[int]:
        """Each image's id: its seed (the digit's index in the split, or the position in ``--data``)."""
        return (self.images.ids if self.images else self._digits[1]).tolist()

    @cached_property
    def _digits(self):
        try:
            return mnist_spread(self.config.images, self.config.split)
        except ValueError as e:
            raise BenchError(f"--images {self.config.images}: {e}") from None

    @classmethod
    def open(cls, out: str | Path, device: str = "cpu") -> Bench:
        """The benchmark of an existing folder, from its manifest."""
        return cls(BenchConfig.from_dict(json.loads((Path(out) / MANIFEST).read_text())["config"]), out, device)

    @cached_property
    def table(self):
        try:
            return load_presets(self.config.presets)
        except (OSError, ValueError) as e:
            raise BenchError(f"--presets {self.config.presets}: {e}") from None

    @cached_property
    def perceptual(self) -> Perceptual | None:
        """LPIPS / FID / KID networks of ``config.metrics`` (their files checked when first asked for)."""
        return Perceptual.of(self.config.metric_weights, self.config.metrics)

    @cached_property
    def prior(self):
        try:
            c = self.config
            return dmap.load_prior(
                c.prior,
                device=self.device,
                dtype=c.dtype,
                gradient_checkpointing=c.grad_checkpointing,
                decoder_slicing=c.decoder_slicing,
                channels_last=c.channels_last,
            )
        except (ValueError, OSError) as e:
            raise BenchError(str(e)) from None

    # --- configuration and manifest -----------------------------------------------

    def options(self, task: str, spec: str, budget: int) -> Options:
        """The options of ``spec`` on ``task`` at ``budget`` (evaluations or steps, by protocol)."""
        name, overrides = self.fixed(spec)
        sigma_y = self.config.sigma_y
        try:
            if self.config.protocol == "equal-nfe":
                return resolve_options(name, self.prior.name, task, presets=self.table, nfe=budget, sigma_y=sigma_y, **overrides)
            return resolve_options(name, self.prior.name, task, presets=self.table, sigma_y=sigma_y, **overrides, steps=budget)
        except ValueError as e:
            raise BenchError(f"{spec}: {e}") from None

    def fixed(self, spec: str) -> tuple[str, dict]:
        """The method of ``spec`` and the options it and the protocol fix (equal-steps: the
        paper's, e.g. DMAP's K = 3, under the spec's own)."""
        name, overrides, _ = parse_method(spec)
        paper = dmap.METHODS[name].options.paper_protocol if self.config.protocol == "equal-steps" else {}
        return name, {**paper, **overrides}

    def preset_used(self, task: str, spec: str) -> str | None:
        """Which preset entry a cell's options come from (:func:`dmap.presets.select`)."""
        name, fixed = self.fixed(spec)
        try:
            return select(self.table, self.prior.name, task, name, sigma_y=self.config.sigma_y, fixed=fixed)[1]
        except PresetError:  # (none at the spec's K: its strength is given, or options() refused it)
            return None

    def _cell(self, task: str, spec: str, nfe: int) -> dict:
        name, _, _ = parse_method(spec)
        method = dmap.METHODS[name]
        opts = self.options(task, spec, nfe)
        reason = unsuited(name, self.task(task)[0], opts, self.prior)
        if reason:
            raise BenchError(f"{spec}: {reason}")
        cell = {"task": task, "method": spec, "nfe_budget": nfe, "nfe": opts.nfe(), "options": opts.to_dict()}
        cell["preset"] = self.preset_used(task, spec)
        if method.uses_cse:
            cse = self.cse(task, spec)
            cell["cse"] = {
                "path": cse_path(spec, task) or "shipped",
                "images": cse.meta.images["n"],
                "fingerprint": fingerprint(cse.adapter.state_dict()),
            }
        return cell

    @cached_property
    def manifest(self) -> dict:
        c = self.config
        if tuple(self.x.shape[1:]) != tuple(self.prior.image_shape):
            raise BenchError(
                f"the images are {tuple(self.x.shape[1:])}, prior {c.prior} expects {self.prior.image_shape}"
                + ("; give --data FOLDER with images of that shape" if not c.data else "")
            )
        return {
            "config": c.to_dict(),
            "image_ids": self.ids,
            "image_files": self.images.manifest() if self.images else None,
            "seeds": {"task": [c.seed], "noise": [c.seed + 1, "image id"], "sampler": [c.seed + 2, "image id"]},
            **({"draws": {"count": c.draws, "draw d > 0 appends": [DRAW, "d"]}} if c.draws > 1 else {}),
            "sigma_y": c.sigma_y,
            "prior": {"name": self.prior.name, "fingerprint": self.prior.fingerprint()},
            "cells": [self._cell(t, m, n) for t in c.tasks for m in c.methods for n in c.nfe],
            **({"metrics": self.perceptual.manifest()} if self.perceptual else {}),
            "versions": {"dmap": dmap.__version__, "torch": torch.__version__, "python": platform.python_version()},
        }

    def check_manifest(self, write: bool) -> None:
        """Refuse a folder that holds another benchmark; write the manifest if ``write``."""
        path = self.out / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            old.pop("history", None)  # kept by --refresh: the versions that solved earlier cells
            mine = json.loads(json.dumps(self.manifest))
            if old != mine:
                diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
                raise BenchError(
                    f"{self.out} holds a benchmark with other settings ({', '.join(diff)} differ); use another --out or delete it"
                )
            stale = {cell_key(r) for r in read_store(self.out) if cell_key(r) in self.cell_ids and not self.current(r)}
            if stale:
                raise BenchError(f"{self.out} holds rows of {len(stale)} cells solved with other settings; --refresh redoes them")
        elif write:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, self.manifest)

    def refresh(self) -> list[str]:
        """Make the folder's benchmark this one when only its cells differ (tasks, methods,
        budgets, or their settings after retuned presets, a preset file, new adapters): the rows of cells
        that are gone or whose settings changed are dropped, to be solved again, and the
        manifest is rewritten (with ``history``: the versions of dmap, torch and python
        that solved the kept cells, when they differ from these).  A row's settings are its
        own (``cell``, :attr:`cell_ids`), not the manifest's: a row solved under other settings
        is dropped whatever the manifest says.  Returns the cells to solve (rows dropped or
        missing); refuses other differences (images, seeds, noise, prior)."""
        old = json.loads((self.out / MANIFEST).read_text())
        old["config"] = BenchConfig.from_dict(old["config"]).to_dict()  # (settings added since: their defaults)
        mine = json.loads(json.dumps(self.manifest))
        fixed = {k: v for k, v in mine["config"].items() if k not in ("tasks", "methods", "nfe", "presets")}
        differ = [k for k in mine if k not in ("config", "cells", "versions") and old.get(k) != mine[k]]
        differ += [f"config.{k}" for k, v in fixed.items() if old["config"].get(k) != v]
        if differ:
            raise BenchError(f"{self.out} holds a benchmark with other {', '.join(differ)}; --refresh renews cells only")
        unchanged = {cell_key(c) for c in mine["cells"] if c in old["cells"]}
        rows = [r for r in read_store(self.out) if self.current(r, unchanged)]
        kept = {cell_key(r) for r in rows}
        history = old.get("history", [])
        if old["versions"] != mine["versions"] and kept:  # which cells older versions solved
            history = [*history, {"versions": old["versions"], "cells": [f"{t} {m} @{n}" for t, m, n in sorted(kept)]}]
        write_store(self.out, rows)
        write_json_atomic(self.out / MANIFEST, {**mine, **({"history": history} if history else {})})
        have = collections.Counter(cell_key(r) for r in rows)
        return [f"{t} {m} @{n}" for t, m, n in self.cell_ids if have[t, m, n] < len(self.ids) * self.config.draws]

    @cached_property
    def cell_ids(self) -> dict[tuple, str]:
        """``{(task, method, budget): fingerprint of the cell's settings}`` (its manifest entry),
        which every row carries as ``cell``."""
        return {cell_key(c): short_sha256(json.dumps(c, sort_keys=True)) for c in self.manifest["cells"]}

    def current(self, row: dict, unchanged: set | None = None) -> bool:
        """Whether ``row`` was solved with its cell's settings of now: its ``cell`` fingerprint,
        or (rows from before rows carried it) its cell being in ``unchanged``, when given."""
        if "cell" in row:
            return row["cell"] == self.cell_ids.get(cell_key(row))
        return unchanged is None or cell_key(row) in unchanged

    # --- the pieces of a unit -----------------------------------------------------

    def task(self, name: str, draw: int = 0) -> tuple[Task, torch.Tensor]:
        """The task (operator from ``seeded(seed, *draw_key(draw))``) and the measurements of every image."""
        if (name, draw) not in self._tasks:
            c = self.config
            shape = tuple(self.x.shape[1:])
            takes = dmap.TASKS[name].takes
            try:
                kernel = load_kernel(c.kernel) if c.kernel and takes == "kernel" else None
                mask = load_mask(c.mask) if c.mask and takes == "mask" else None
                g = seeded(c.seed, *draw_key(draw))
                task = dmap.make_task(name, shape, sigma_y=c.sigma_y, generator=g, kernel=kernel, mask=mask)
            except (ValueError, FileNotFoundError) as e:
                raise BenchError(f"{name}: {e}") from None
            y = task.simulate(self.x, generator=[seeded(c.seed + 1, i, *draw_key(draw)) for i in self.ids])
            self._tasks[name, draw] = (task, y)
        return self._tasks[name, draw]

    def cse(self, task: str, spec: str):
        from dmap.catalogue import get_cse

        path = cse_path(spec, task)
        key = (task, path)
        if key not in self._cse:
            try:
                self._cse[key] = get_cse(self.prior, task, path, sigma_y=self.config.sigma_y)
            except (ValueError, OSError) as e:
                raise BenchError(f"{spec}: {e}") from None
        return self._cse[key]

    def solve(self, unit: Unit) -> tuple[torch.Tensor, float]:
        """Restorations of a unit's images and the seconds the solver took."""
        c = self.config
        name, _, _ = parse_method(unit.method)
        task, y = self.task(unit.task, unit.draw)
        task = task.to(self.device)
        cse = self.cse(unit.task, unit.method) if dmap.METHODS[name].uses_cse else None
        # sample k of an image: its own stream; sample 0 is the one a single-sample run solves
        key = draw_key(unit.draw)
        gens = [seeded(c.seed + 2, self.ids[i], *([k] if k else []), *key) for i in unit.index for k in range(c.samples)]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = run_method(
            name,
            self.prior,
            task,
            y[unit.index].repeat_interleave(c.samples, 0).to(self.device),
            self.options(unit.task, unit.method, unit.nfe),
            generator=gens,
            cse=cse,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return out.cpu(), time.perf_counter() - start

    def peak_mem_mb(self) -> float:
        """Peak GPU memory allocated during the last unit (CUDA), else the worker's peak
        resident set size so far."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rows(self, unit: Unit, out: torch.Tensor, seconds: float) -> list[dict]:
        """One row per image; with ``samples > 1`` (``out`` holds each image's samples in turn)
        ``psnr`` / ``ssim`` are the mean over its samples and ``psnr_of_mean`` that of their mean."""
        n = self.config.samples
        x = self.x[unit.index]
        task, y = self.task(unit.task, unit.draw)
        first, xs = out[::n], x.repeat_interleave(n, 0)
        p, s = psnr(out, xs).reshape(-1, n).mean(1), ssim(out, xs).reshape(-1, n).mean(1)
        r = residual_rms(task.operator, y[unit.index], first)
        mean = out.reshape(len(x), n, *out.shape[1:]).mean(1)
        p_mean = psnr(mean, x) if n > 1 else None
        scores = {k: v.reshape(-1, n).mean(1) for k, v in (self.perceptual.per_image(out, xs) if self.perceptual else {}).items()}
        mem = self.peak_mem_mb()
        return [
            {
                **self.row_key_fields(unit, i),
                "psnr": float(p[k]),
                "ssim": float(s[k]),
                "residual_rms": float(r[k]),
                "seconds": seconds / len(unit.index),
                "peak_mem_mb": mem,
                "output_sha": short_sha256(out[k * n : (k + 1) * n]),
                **({"psnr_of_mean": float(p_mean[k])} if n > 1 else {}),
                **{name: float(v[k]) for name, v in scores.items()},
            }
            for k, i in enumerate(unit.index)
        ]

    def row_key_fields(self, unit: Unit, i: int) -> dict:
        """What identifies the row of image position ``i`` in ``unit`` (and where it was solved)."""
        return {
            "task": unit.task,
            "method": unit.method,
            "nfe_budget": unit.nfe,
            "image": self.ids[i],
            "index": i,
            "batch": unit.batch,
            **({"draw": unit.draw} if self.config.draws > 1 else {}),
            "cell": self.cell_ids[unit.task, unit.method, unit.nfe],
        }

    def diverged_row(self, unit: Unit, reason: str) -> dict:
        """The row of a one-image unit whose solve diverged: NaN scores and the reason."""
        nan = float("nan")
        (i,) = unit.index
        return {
            **self.row_key_fields(unit, i),
            "psnr": nan,
            "ssim": nan,
            "residual_rms": nan,
            "seconds": nan,
            "peak_mem_mb": nan,
            "output_sha": None,
            "diverged": reason,
        }


def pending(bench: Bench, rank: int = 0, world: int = 1) -> tuple[list[Unit], set]:
    """This rank's units (every ``world``-th, from ``rank``) with an image not yet in the
    store, and the keys of the rows already there."""
    done = {row_key(r) for r in read_store(bench.out)}
    todo = [
        u
        for n, u in enumerate(units(bench.config))
        if n % world == rank and any((u.task, u.method, u.nfe, bench.ids[i], u.draw) not in done for i in u.index)
    ]
    return todo, done


def run_unit(bench: Bench, unit: Unit, done: set, rank: int = 0, keep: bool = True) -> float:
    """Solve ``unit``, keep its outputs (first batch, when ``keep``), append its rows not in
    ``done`` to this rank's shard; returns the solver's seconds.  A batch that diverges
    (:class:`SolveError`) is solved again one image at a time (batch equals loop), and an
    image that diverges alone gets a row with NaN scores and the reason (``diverged``)."""
    try:
        out, seconds = bench.solve(unit)
    except SolveError as e:
        if len(unit.index) > 1:
            return sum(run_unit(bench, dataclasses.replace(unit, index=[i]), done, rank, keep=False) for i in unit.index)
        rows = [bench.diverged_row(unit, str(e))]
        seconds = 0.0
    else:
        first = out[:: bench.config.samples]  # (each image's first sample; figures and FID from draw 0)
        if unit.batch == 0 and keep and unit.draw == 0:
            save_outputs(outputs_path(bench.out, unit.task, unit.method, unit.nfe), first.numpy())
        if bench.perceptual and unit.draw == 0:
            bench.perceptual.keep_features(bench.out, unit.task, unit.method, unit.nfe, unit.index, first)
        rows = bench.rows(unit, out, seconds)
    append_rows(bench.out / f"results-r{rank}.jsonl", [r for r in rows if row_key(r) not in done])
    return seconds
