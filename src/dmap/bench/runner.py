"""The benchmark runner: a (task, method, budget, image) grid solved in fixed batches,
each result appended to a store the moment its batch finishes.

Reproducibility: the images are ``mnist_spread(images, split)`` (ids in the manifest);
masks / kernels / permutations come from ``seeded(seed)``, the measurement noise of image
``i`` from ``seeded(seed + 1, i)`` and its sampler from ``seeded(seed + 2, i)``, so an
image's result does not depend on which batch or worker solved it.  Batches are fixed
chunks of the image list: a rerun, another worker count or a resumed run solves the
same batches, bit for bit.

The store is one JSON line per (task, method, nfe, image), appended by each worker to
``results-r<rank>.jsonl`` with one write, flush and fsync per batch; a torn last line
(a kill mid-write) is cut off on the next run, rows already present are never written
again.  When every batch is done, rank 0 merges the shards into ``results.jsonl``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import dmap
from dmap.data import mnist_spread
from dmap.metrics import psnr, ssim
from dmap.operators.tasks import Task
from dmap.priors.base import fingerprint
from dmap.rng import seeded
from dmap.solvers import METHODS, resolve_options

STORE = "results.jsonl"
MANIFEST = "manifest.json"


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


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_method(spec: str) -> tuple[str, dict, str | None]:
    """``"dps+cse[guide=cse,cse=FILE]"`` -> ``("dps+cse", {"guide": "cse"}, "FILE")``: the
    method, option overrides and an adapter path (``cse=``)."""
    name, _, rest = spec.partition("[")
    if rest and not rest.endswith("]"):
        raise BenchError(f"method {spec!r}: options go in one pair of brackets, e.g. dmap[step_size=2]")
    if name not in METHODS:
        raise BenchError(f"unknown method {name!r} in {spec!r}; choose from {', '.join(METHODS)}")
    options = {}
    for item in split_specs(rest[:-1]) if rest else []:
        key, eq, val = item.partition("=")
        if not eq:
            raise BenchError(f"method {spec!r}: {item!r} is not key=value")
        options[key.strip()] = _value(val.strip())
    cse = options.pop("cse", None)
    if cse is not None and not METHODS[name].uses_cse:
        raise BenchError(f"method {spec!r}: {name} takes no conditional score estimator")
    if "steps" in options:
        raise BenchError(f"method {spec!r}: steps follow from the budget (--nfe)")
    return name, options, cse


@dataclass(frozen=True)
class BenchConfig:
    """What to run.  ``methods`` are specs (:func:`parse_method`); ``nfe`` the budgets in
    network evaluations per image (each method's steps are the most that fit)."""

    prior: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    images: int
    nfe: tuple[int, ...] = (1000,)
    split: str = "test"
    seed: int = 0
    sigma_y: float = 0.05
    batch_size: int = 16
    presets: str | None = None

    def __post_init__(self) -> None:
        if self.images < 1 or self.batch_size < 1 or min(self.nfe, default=0) < 1:
            raise BenchError("--images, --batch-size and every --nfe must be >= 1")
        if not (self.tasks and self.methods and self.nfe):
            raise BenchError("give at least one task, method and budget")
        for name in self.tasks:
            if name not in dmap.TASKS:
                raise BenchError(f"unknown task {name!r}; choose from {', '.join(dmap.TASKS)}")
        for spec in self.methods:
            parse_method(spec)
        for kind, values in (("task", self.tasks), ("method", self.methods), ("budget", self.nfe)):
            if len(set(values)) != len(values):
                raise BenchError(f"a {kind} is listed twice")


@dataclass
class Unit:
    """One batch of work: images ``ids`` (positions ``index``) of one (task, method, nfe)."""

    task: str
    method: str
    nfe: int
    batch: int
    index: list[int] = field(default_factory=list)


def units(config: BenchConfig) -> list[Unit]:
    """Every batch of the grid in a fixed order."""
    chunks = [list(range(s, min(s + config.batch_size, config.images)))
              for s in range(0, config.images, config.batch_size)]
    return [Unit(t, m, n, j, c) for t in config.tasks for m in config.methods for n in config.nfe
            for j, c in enumerate(chunks)]


class Bench:
    """A benchmark in folder ``out``: its manifest, store and the solving of units."""

    def __init__(self, config: BenchConfig, out: str | Path, device: str = "cpu") -> None:
        self.config = config
        self.out = Path(out)
        self.device = torch.device(device)
        if config.presets:
            try:
                self.table = dmap.solvers.load_presets(config.presets)
            except (OSError, ValueError) as e:
                raise BenchError(f"--presets {config.presets}: {e}") from None
        else:
            self.table = None
        try:
            self.prior = dmap.load_prior(config.prior).to(self.device)
        except (ValueError, OSError) as e:
            raise BenchError(str(e)) from None
        self.x, ids = mnist_spread(config.images, config.split)
        self.ids = ids.tolist()
        self._tasks: dict[str, tuple[Task, torch.Tensor]] = {}
        self._cse: dict[str | None, object] = {}
        self.manifest = self._manifest()

    @classmethod
    def open(cls, out: str | Path, device: str = "cpu") -> Bench:
        """The benchmark of an existing folder, rebuilt from its manifest."""
        config = json.loads((Path(out) / MANIFEST).read_text())["config"]
        return cls(BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}), out, device)

    # --- configuration and manifest -----------------------------------------------

    def options(self, task: str, spec: str, nfe: int) -> dict:
        name, overrides, _ = parse_method(spec)
        try:
            opts = resolve_options(name, self.prior.name, task, presets=self.table, **overrides)
        except ValueError as e:
            raise BenchError(f"{spec}: {e}") from None
        opts["steps"] = METHODS[name].steps_for(nfe, opts)
        return opts

    def _manifest(self) -> dict:
        c = self.config
        cells = []
        for t in c.tasks:
            for m in c.methods:
                name, _, cse_path = parse_method(m)
                if METHODS[name].uses_cse and not self.task(t)[0].operator.linear:
                    raise BenchError(f"{m} needs a linear task; {t} is not")
                for n in c.nfe:
                    opts = self.options(t, m, n)
                    cell = {"task": t, "method": m, "nfe_budget": n, "nfe": METHODS[name].nfe(opts), "options": opts}
                    if METHODS[name].uses_cse:
                        cse = self.cse(t, m)
                        cell["cse"] = {"path": cse_path or "shipped", "images": cse.meta["images"]["n"],
                                       "fingerprint": fingerprint(cse.adapter.state_dict())}
                    cells.append(cell)
        return {
            "config": asdict(c),
            "image_ids": self.ids,
            "seeds": {"task": [c.seed], "noise": [c.seed + 1, "image id"], "sampler": [c.seed + 2, "image id"]},
            "sigma_y": c.sigma_y,
            "prior": {"name": self.prior.name, "fingerprint": self.prior.fingerprint()},
            "cells": cells,
            "versions": {"dmap": dmap.__version__, "torch": torch.__version__, "python": platform.python_version()},
        }

    def check_manifest(self, write: bool) -> None:
        """Refuse a folder that holds another benchmark; write the manifest if ``write``."""
        path = self.out / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            mine = json.loads(json.dumps(self.manifest))
            if old != mine:
                diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
                raise BenchError(f"{self.out} holds a benchmark with other settings ({', '.join(diff)} differ); "
                                 "use another --out or delete it")
        elif write:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.manifest, indent=1) + "\n")
            os.replace(tmp, path)

    # --- the pieces of a unit -----------------------------------------------------

    def task(self, name: str) -> tuple[Task, torch.Tensor]:
        """The task (operator from ``seeded(seed)``) and the measurements of every image."""
        if name not in self._tasks:
            c = self.config
            task = dmap.make_task(name, self.prior.shape, sigma_y=c.sigma_y, generator=seeded(c.seed))
            y = task.simulate(self.x, generator=[seeded(c.seed + 1, i) for i in self.ids])
            self._tasks[name] = (task, y)
        return self._tasks[name]

    def cse(self, task: str, spec: str):
        from dmap.cse import get_cse

        _, _, path = parse_method(spec)
        key = (task, path)
        if key not in self._cse:
            try:
                self._cse[key] = get_cse(self.prior, task, path)
            except (ValueError, OSError) as e:
                raise BenchError(f"{spec}: {e}") from None
        return self._cse[key]

    def solve(self, unit: Unit) -> tuple[torch.Tensor, float]:
        """Restorations of a unit's images and the seconds the solver took."""
        c = self.config
        name, _, _ = parse_method(unit.method)
        task, y = self.task(unit.task)
        task = Task(task.name, task.operator.to(self.device), task.sigma_y)
        opts = self.options(unit.task, unit.method, unit.nfe)
        extra = {"cse": self.cse(unit.task, unit.method)} if METHODS[name].uses_cse else {}
        gens = [seeded(c.seed + 2, self.ids[i]) for i in unit.index]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = METHODS[name].fn(self.prior, task.operator, y[unit.index].to(self.device), generator=gens,
                               **{**opts, **extra})
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
        x = self.x[unit.index]
        p, s = psnr(out, x), ssim(out, x)
        mem = self.peak_mem_mb()
        return [{"task": unit.task, "method": unit.method, "nfe_budget": unit.nfe, "image": self.ids[i], "index": i,
                 "batch": unit.batch, "psnr": float(p[k]), "ssim": float(s[k]),
                 "seconds": seconds / len(unit.index), "peak_mem_mb": mem,
                 "output_sha": _sha(out[k])} for k, i in enumerate(unit.index)]

    def save_outputs(self, unit: Unit, out: torch.Tensor) -> None:
        """Keep the restorations of the first batch (for the report's image grids)."""
        if unit.batch == 0:
            path = outputs_path(self.out, unit.task, unit.method, unit.nfe)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, out.numpy().astype(np.float32))
            os.replace(tmp, path)


def outputs_path(out: Path, task: str, method: str, nfe: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in method)
    return out / "outputs" / task / f"{safe}@{nfe}.npy"


def _sha(x: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


def row_key(row: dict) -> tuple:
    return (row["task"], row["method"], row["nfe_budget"], row["image"])


def read_store(out: Path) -> list[dict]:
    """Every complete row of the store and its shards, first copy of each key only;
    a torn last line of a shard (a kill mid-write) is cut off the file."""
    rows, seen = [], set()
    for path in [out / STORE, *sorted(out.glob("results-r*.jsonl"))]:
        if not path.exists():
            continue
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with path.open("r+b") as f:
                f.truncate(end)
        for line in data[:end].decode().splitlines():
            row = json.loads(line)
            if row_key(row) not in seen:
                seen.add(row_key(row))
                rows.append(row)
    return rows


def append_rows(path: Path, rows: list[dict]) -> None:
    """One write, flush and fsync: a batch's rows land together or (killed) as a torn tail."""
    with path.open("ab") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows).encode())
        f.flush()
        os.fsync(f.fileno())


def merge_store(out: Path) -> list[dict]:
    """Rewrite the shards into ``results.jsonl`` (sorted, atomic) and remove them."""
    rows = sorted(read_store(out), key=lambda r: (r["task"], r["method"], r["nfe_budget"], r["index"]))
    tmp = out / (STORE + ".tmp")
    with tmp.open("w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / STORE)
    for shard in out.glob("results-r*.jsonl"):
        shard.unlink()
    return rows


def pending(bench: Bench, rank: int = 0, world: int = 1) -> tuple[list[Unit], set]:
    """This rank's units (every ``world``-th, from ``rank``) with an image not yet in the
    store, and the keys of the rows already there."""
    done = {row_key(r) for r in read_store(bench.out)}
    todo = [u for n, u in enumerate(units(bench.config)) if n % world == rank
            and any((u.task, u.method, u.nfe, bench.ids[i]) not in done for i in u.index)]
    return todo, done


def run_unit(bench: Bench, unit: Unit, done: set, rank: int = 0) -> float:
    """Solve ``unit``, keep its outputs, append its rows not in ``done`` to this rank's
    shard; returns the solver's seconds."""
    out, seconds = bench.solve(unit)
    bench.save_outputs(unit, out)
    append_rows(bench.out / f"results-r{rank}.jsonl", [r for r in bench.rows(unit, out, seconds)
                                                        if row_key(r) not in done])
    return seconds


def cells(rows: list[dict], config: BenchConfig, manifest: dict) -> list[dict]:
    """``summary.json``: one cell per (task, method, nfe) with its statistics."""
    from dmap.bench.report import mean_se

    nfe_of = {(c["task"], c["method"], c["nfe_budget"]): c["nfe"] for c in manifest["cells"]}
    result = []
    for t in config.tasks:
        for m in config.methods:
            for n in config.nfe:
                sel = [r for r in rows if (r["task"], r["method"], r["nfe_budget"]) == (t, m, n)]
                if not sel:
                    continue
                p_mean, p_se = mean_se([r["psnr"] for r in sel])
                result.append({
                    "task": t, "method": m, "prior": config.prior, "n_images": len(sel), "nfe_budget": n,
                    "nfe": nfe_of[(t, m, n)], "psnr_mean": p_mean, "psnr_se": p_se,
                    "ssim_mean": float(np.mean([r["ssim"] for r in sel])),
                    "seconds_per_image": float(np.mean([r["seconds"] for r in sel])),
                    "peak_mem_mb": float(max(r["peak_mem_mb"] for r in sel)),
                    "psnr_per_image": [r["psnr"] for r in sorted(sel, key=lambda r: r["index"])],
                })
    return result


def expected_rows(config: BenchConfig) -> int:
    return len(config.tasks) * len(config.methods) * len(config.nfe) * config.images


__all__ = ["Bench", "BenchConfig", "BenchError", "Unit", "cells", "expected_rows", "merge_store", "parse_method",
           "pending", "read_store", "run_unit", "split_specs", "units"]
