"""Sample quality of the shipped priors: fd-mnist and the class histogram; for a latent
prior also its autoencoder's reconstruction PSNR.

    python benchmarks/prior_quality.py [--n 1000] [--steps 250] [--only mnist-latent]
        [--latent FOLDER]

fd-mnist is the Frechet distance between the shipped digit classifier's penultimate
features of two image sets.  Rows: 1,000 samples of `mnist` and of `mnist-latent`
(ancestral sampling, ``--steps`` respaced steps, seed 0; ``--latent FOLDER`` replaces the
shipped latent prior, e.g. while it trains); 1,000 exact samples of `gmm-mnist` (drawn
from the mixture itself); and 999 train digits (the floor: real digits against real
digits), each against the 999 test digits.  ``--only`` recomputes some rows and keeps the
others of ``benchmarks/results/prior_quality.json``.  Writes
``benchmarks/results/prior_quality.{json,md}`` and a grid of the first 64 samples of each
prior.
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
from dmap.metrics import fd_mnist, psnr
from dmap.rng import sample_generators, seeded
from dmap.solvers.sample import sample_prior

SETS = ("mnist", "mnist-latent", "gmm-mnist", "train digits (floor)")


def draw(name: str, args, train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The image set ``name`` and what else is measured on it (seconds, reconstruction)."""
    if name == "gmm-mnist":
        mixture = dmap.load_prior("gmm-mnist").mixture
        return mixture.sample(args.n, generator=seeded(0)).float().reshape(-1, 1, 32, 32).clamp(-1, 1), {}
    if name.startswith("train"):
        return train[torch.randperm(len(train), generator=seeded(0))[: len(test)]], {}
    prior = dmap.load_prior(args.latent if name == "mnist-latent" and args.latent else name)
    start = time.perf_counter()
    gens = [sample_generators(0, 250, offset=i) for i in range(0, args.n, 250)]
    chunks = [sample_prior(prior, 250, steps=args.steps, generator=g) for g in gens]
    extra = {"sampling_seconds": time.perf_counter() - start}
    if prior.latent:
        with torch.no_grad():
            recon = torch.cat([prior.decode(prior.encode(x)).clamp(-1, 1) for x in test.split(250)])
        extra["autoencoder_psnr"] = psnr(recon, test).mean().item()
    return torch.cat(chunks)[: args.n], extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--only", default=",".join(SETS), help="the rows to compute (the others are kept)")
    ap.add_argument("--latent", help="a latent prior folder in place of the shipped mnist-latent")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    test, _ = mnist("test")
    train, _ = mnist("train")
    path = out / "prior_quality.json"
    kept = {r["set"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    for name in args.only.split(","):
        x, extra = draw(name, args, train, test)
        hist = torch.bincount(predict(x), minlength=10)
        kept[name] = {"set": name, "n": len(x), "fd_mnist": fd_mnist(x, test), "class_histogram": hist.tolist(), **extra}
        print(kept[name], flush=True)
        if name != "train digits (floor)":
            grid([list(x[i : i + 8]) for i in range(0, 64, 8)], out / f"samples_{name}.png", cell=32, pad=1)
    rows = [kept[s] for s in SETS if s in kept]
    path.write_text(json.dumps({"rows": rows, "steps": args.steps}, indent=1))
    fd = {r["set"]: r["fd_mnist"] for r in rows}
    lines = [
        f"fd-mnist against the {len(test)} test digits (`python benchmarks/prior_quality.py`; "
        f"network priors sampled with {args.steps} ancestral steps)",
        "",
        "| samples | n | fd-mnist | predicted classes 0-9 | seconds to sample |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        seconds = f"{r['sampling_seconds']:.0f}" if "sampling_seconds" in r else "-"
        lines.append(f"| {r['set']} | {r['n']} | {r['fd_mnist']:.2f} | {' '.join(map(str, r['class_histogram']))} | {seconds} |")
    if {"mnist", "gmm-mnist"} <= fd.keys():
        lines += ["", f"FD(mnist) / FD(gmm-mnist) = {fd['mnist'] / fd['gmm-mnist']:.3f} (target: at most 0.333)"]
    if {"mnist", "mnist-latent"} <= fd.keys():
        ae = kept["mnist-latent"]["autoencoder_psnr"]
        lines += [
            f"FD(mnist-latent) / FD(mnist) = {fd['mnist-latent'] / fd['mnist']:.2f} (target: at most 2); "
            f"mnist-latent's autoencoder reconstructs the test digits at {ae:.2f} dB PSNR (target: at least 28)"
        ]
    (out / "prior_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
