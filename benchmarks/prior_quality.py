"""Sample quality of the shipped priors: fd-mnist and the class histogram.

    python benchmarks/prior_quality.py [--n 1000] [--steps 250]

fd-mnist is the Frechet distance between the shipped digit classifier's penultimate
features of two image sets.  Rows: 1,000 samples of `mnist` (ancestral sampling,
``--steps`` respaced steps, seed 0); 1,000 exact samples of `gmm-mnist` (drawn from the
mixture itself); and 999 train digits (the floor: real digits against real digits),
each against the 999 test digits.  Writes ``benchmarks/results/prior_quality.{json,md}``
and a grid of the first 64 samples of each prior.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import dmap
from common import ROOT
from dmap.classifier import predict
from dmap.data import mnist
from dmap.figures import grid
from dmap.metrics import fd_mnist
from dmap.rng import sample_generators, seeded
from dmap.solvers.sample import sample_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=250)
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    test, _ = mnist("test")
    train, _ = mnist("train")
    sets = {}
    start = time.perf_counter()
    sets["mnist"] = torch.cat(
        [
            sample_prior(dmap.load_prior("mnist"), 250, steps=args.steps, generator=sample_generators(0, 250, offset=i))
            for i in range(0, args.n, 250)
        ]
    )[: args.n]
    seconds = time.perf_counter() - start
    mixture = dmap.load_prior("gmm-mnist").mixture
    sets["gmm-mnist"] = mixture.sample(args.n, generator=seeded(0)).float().reshape(-1, 1, 32, 32).clamp(-1, 1)
    sets["train digits (floor)"] = train[torch.randperm(len(train), generator=seeded(0))[: len(test)]]
    rows = []
    for name, x in sets.items():
        hist = torch.bincount(predict(x), minlength=10)
        rows.append({"set": name, "n": len(x), "fd_mnist": fd_mnist(x, test), "class_histogram": hist.tolist()})
        print(rows[-1], flush=True)
    for name in ("mnist", "gmm-mnist"):
        grid([list(sets[name][i : i + 8]) for i in range(0, 64, 8)], out / f"samples_{name}.png", cell=32, pad=1)
    ratio = rows[0]["fd_mnist"] / rows[1]["fd_mnist"]
    (out / "prior_quality.json").write_text(
        json.dumps({"rows": rows, "steps": args.steps, "fd_ratio": ratio, "mnist_sampling_seconds": seconds}, indent=1)
    )
    lines = [
        f"fd-mnist against the {len(test)} test digits (`python benchmarks/prior_quality.py`; "
        f"`mnist` sampled with {args.steps} ancestral steps)",
        "",
        "| samples | n | fd-mnist | predicted classes 0-9 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['set']} | {r['n']} | {r['fd_mnist']:.2f} | {' '.join(map(str, r['class_histogram']))} |" for r in rows]
    lines += ["", f"FD(mnist) / FD(gmm-mnist) = {ratio:.3f} (target: at most 0.333)"]
    (out / "prior_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
