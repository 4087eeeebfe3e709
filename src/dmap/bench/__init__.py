"""``dmap bench``: a resumable, shardable benchmark runner.

    from dmap.bench import BenchConfig, run_bench
    summary = run_bench(BenchConfig("mnist", ("sr4",), ("dps", "dmap"), images=32), "runs/b")

Modules: :mod:`~dmap.bench.specs` (what to run), :mod:`~dmap.bench.store` (the
append-only result store), :mod:`~dmap.bench.runner` (solving the batches),
:mod:`~dmap.bench.report` (statistics, tables, figures), :mod:`~dmap.bench.distributed`
(sharing the work between processes); this module is their face.
"""

from dmap.bench.distributed import run_bench
from dmap.bench.report import cells, markdown, mean_se, write_report
from dmap.bench.runner import Bench, pending, run_unit
from dmap.bench.specs import METRICS, PROTOCOLS, BenchConfig, BenchError, Unit, parse_method, split_specs, units
from dmap.bench.store import merge_store, read_store

__all__ = [
    "METRICS",
    "PROTOCOLS",
    "Bench",
    "BenchConfig",
    "BenchError",
    "Unit",
    "cells",
    "markdown",
    "mean_se",
    "merge_store",
    "parse_method",
    "pending",
    "read_store",
    "run_bench",
    "run_unit",
    "split_specs",
    "units",
    "write_report",
]
