"""The benchmark store: one JSON line per (task, method, nfe, image).

Each worker appends to ``results-r<rank>.jsonl`` with one write, flush and fsync per
batch; a torn last line (a kill mid-write) is cut off on the next read, rows already
present are never written again, and when every batch is done the shards are merged
into ``results.jsonl``.  The restorations of the first batch are kept as ``.npy`` for
the report's image grids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dmap.utils import atomic_path

STORE = "results.jsonl"
MANIFEST = "manifest.json"


def cell_key(row: dict) -> tuple:
    """The (task, method, budget) cell of a row or a manifest entry."""
    return (row["task"], row["method"], row["nfe_budget"])


def row_key(row: dict) -> tuple:
    return (row["task"], row["method"], row["nfe_budget"], row["image"], row.get("draw", 0))


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


def write_store(out: Path, rows: list[dict]) -> list[dict]:
    """``rows`` as the whole store: ``results.jsonl`` (sorted, atomic), the shards removed."""
    rows = sorted(rows, key=lambda r: (r["task"], r["method"], r["nfe_budget"], r["index"]))
    with atomic_path(out / STORE) as tmp, tmp.open("w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())
    for shard in out.glob("results-r*.jsonl"):
        shard.unlink()
    return rows


def merge_store(out: Path) -> list[dict]:
    """Rewrite the shards into ``results.jsonl`` (sorted, atomic) and remove them."""
    return write_store(out, read_store(out))


def outputs_path(out: Path, task: str, method: str, nfe: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in method)
    return out / "outputs" / task / f"{safe}@{nfe}.npy"


def save_outputs(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, x.astype(np.float32))


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
