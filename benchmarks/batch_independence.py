"""Does a batch give each image what it gets solved alone, on the `mnist` UNet?  Each method
solves 8 test digits together and one by one (the same per-image generators); the largest
pixel and PSNR differences per (task, method, budget).

    python benchmarks/batch_independence.py

Writes ``benchmarks/results/batch_independence.md``.
"""

from __future__ import annotations

import torch

import dmap
from common import RESULTS
from dmap.data import mnist_spread
from dmap.metrics import psnr
from dmap.rng import sample_generators, seeded


def main() -> None:
    torch.set_num_threads(1)
    prior = dmap.load_prior("mnist")
    x, _ = mnist_spread(8)
    lines = ["| task | method | NFE | max pixel difference | max PSNR difference (dB) |", "|---|---|---|---|---|"]
    for task_name in ("sr4", "inpaint-box"):
        task = dmap.make_task(task_name, prior.image_shape, generator=seeded(0))
        y = task.simulate(x, generator=sample_generators(1, 8))
        for method in ("dps", "dmap", "ddrm", "pigdm"):
            for nfe in (10, 100):
                batch = dmap.solve(method, prior, task, y, nfe=nfe, generator=sample_generators(2, 8))
                alone = torch.cat(
                    [
                        dmap.solve(method, prior, task, y[i : i + 1], nfe=nfe, generator=sample_generators(2, 1, offset=i))
                        for i in range(8)
                    ]
                )
                dp = float((psnr(batch, x) - psnr(alone, x)).abs().max())
                lines.append(f"| {task_name} | {method} | {nfe} | {float((batch - alone).abs().max()):.2e} | {dp:.2e} |")
                print(lines[-1], flush=True)
    head = "`mnist` prior, 8 test digits, batch of 8 against one by one, one thread (`python benchmarks/batch_independence.py`)\n\n"
    (RESULTS / "batch_independence.md").write_text(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
