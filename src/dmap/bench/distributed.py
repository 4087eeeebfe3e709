"""Distributing a benchmark: one process, ``workers`` processes started here, or the
processes of ``torchrun --nproc_per_node N -m dmap bench ...`` (``RANK`` / ``WORLD_SIZE``
in the environment) share the batches by rank through ``torch.distributed`` (gloo); rank 0
merges the store and writes the report."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

from dmap.bench.report import cells, write_report
from dmap.bench.runner import Bench, pending, run_unit
from dmap.bench.specs import BenchConfig, BenchError
from dmap.bench.store import MANIFEST, merge_store
from dmap.progress import progress_bar


def _device(device: str | None, local_rank: int) -> str:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise BenchError("device cuda: no CUDA device visible to this torch")
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def _work(config: BenchConfig, out: Path, rank: int, world: int, device: str | None, show_progress: bool) -> list[dict] | None:
    """One worker's share; rank 0 then merges and reports (returns the summary)."""
    import torch.distributed as dist

    distributed = world > 1
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    bench = Bench(config, out, _device(device, int(os.environ.get("LOCAL_RANK", rank))))
    if rank == 0:
        bench.check_manifest(write=True)
    if distributed:
        dist.barrier()
        if rank != 0:
            bench.check_manifest(write=False)
    todo, done = pending(bench, rank, world)
    bar = progress_bar(len(todo), f"bench rank {rank}" if distributed else "bench", "batch", show_progress and rank == 0)
    solve_s = 0.0
    for unit in todo:
        solve_s += run_unit(bench, unit, done, rank)
        bar.update(1)
        bar.set_postfix_str(f"{unit.task} {unit.method}")
    bar.close()
    if distributed:
        dist.barrier()
    if rank != 0:
        return None
    rows = merge_store(out)
    summary = cells(rows, config, bench.manifest)
    if bench.perceptual:
        for c in summary:
            c.update(bench.perceptual.set_scores(out, bench.x, c["task"], c["method"], c["nfe_budget"]))
    write_report(bench, rows, summary)
    wall = time.perf_counter() - start
    with (out / "runs.jsonl").open("a") as f:
        f.write(
            json.dumps(
                {
                    "workers": world,
                    "device": str(bench.device),
                    "threads": config.threads,
                    "units_solved": len(todo),
                    "wall_s": wall,
                    "solve_s": solve_s,
                    "overhead": (wall / solve_s - 1) if solve_s > 0 else None,
                }
            )
            + "\n"
        )
    if len(rows) != config.expected_rows():
        raise BenchError(f"the store holds {len(rows)} rows, {config.expected_rows()} expected")
    return summary


def _spawned(rank: int, world: int, port: int, config: BenchConfig, out: Path, device: str | None, show_progress: bool) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _work(config, out, rank, world, device, show_progress)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bench(
    config: BenchConfig,
    out: str | Path,
    *,
    workers: int = 1,
    device: str | None = None,
    show_progress: bool = True,
    refresh: bool = False,
) -> list[dict]:
    """Run (or finish) the benchmark ``config`` in folder ``out`` and return its summary
    cells.  ``workers > 1`` starts that many processes; under ``torchrun`` the ranks come
    from the environment (the summary is returned on rank 0, ``[]`` elsewhere).
    ``refresh``: a folder whose benchmark differs in its cells only is brought to this one,
    solving again the cells that changed (:meth:`Bench.refresh`).
    Raises :class:`BenchError` for a bad configuration or a folder holding another one."""
    import torch.distributed as dist

    out = Path(out)
    if refresh and (out / MANIFEST).exists() and int(os.environ.get("RANK", "0")) == 0:
        stale = Bench(config, out, _device(device, 0)).refresh()
        if show_progress and stale:
            print(f"solving {len(stale)} cells with changed settings or missing rows: {'; '.join(stale)}", file=sys.stderr)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # torchrun
        rank = int(os.environ["RANK"])
        dist.init_process_group("gloo")
        try:
            return _work(config, out, rank, world, device, show_progress) or []
        finally:
            dist.destroy_process_group()
    if workers < 1:
        raise BenchError("--workers must be >= 1")
    if workers == 1:
        return _work(config, out, 0, 1, device, show_progress)
    Bench(config, out, _device(device, 0)).check_manifest(write=True)  # refuse a mismatch before starting
    torch.multiprocessing.spawn(
        _spawned, args=(workers, _free_port(), config, out, device, show_progress), nprocs=workers, join=True
    )
    return json.loads((out / "summary.json").read_text())
