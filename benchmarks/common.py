"""What the benchmark scripts share: paths, the paper's tasks and the `dmap bench` call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAPER_TASKS = list(__import__("dmap.shipped").shipped.PAPER_TASKS)


def bench(
    prior: str,
    tasks: list[str],
    methods: list[str],
    out: Path,
    *,
    images: int = 32,
    nfe: int = 1000,
    threads: int = 1,
    workers: int = 1,
    presets: Path | None = None,
) -> list[dict]:
    """Run (or finish) ``dmap bench`` into ``out`` and return its summary cells."""
    cmd = [
        "dmap",
        "bench",
        "--prior",
        prior,
        "--tasks",
        ",".join(tasks),
        "--methods",
        ",".join(methods),
        "--images",
        str(images),
        "--nfe",
        str(nfe),
        "--threads",
        str(threads),
        "--workers",
        str(workers),
        "--out",
        str(out),
    ] + (["--presets", str(presets)] if presets else [])
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "summary.json").read_text())
