"""Make the shipped ``mnist-latent`` folder from a finished ``dmap train --latent`` run:

    dmap train --latent --out runs/mnist-latent --ae-steps 2500 --steps 12000 --checkpoint-every 100
    python scripts/ship_mnist_latent.py runs/mnist-latent

copies the diffusers folder (``vae/``, ``scheduler/``, ``prompt_embedding.safetensors``,
``dmap.json``) to ``src/dmap/assets/mnist-latent/`` with the UNet's weights stored in
float16 (diffusers loads them back into float32), so that the folder stays under 15 MB;
its loss logs go to ``benchmarks/results/mnist_latent_{autoencoder,unet}_loss.csv``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    run = Path(sys.argv[1])
    out = ROOT / "src" / "dmap" / "assets" / "mnist-latent"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for part in ("vae", "scheduler"):
        shutil.copytree(run / part, out / part)
    shutil.copy(run / "prompt_embedding.safetensors", out)
    UNet2DConditionModel.from_pretrained(run / "unet").to(torch.float16).save_pretrained(out / "unet")
    meta = json.loads((run / "dmap.json").read_text())
    meta["unet_weights"] = "stored in float16, loaded as float32"
    (out / "dmap.json").write_text(json.dumps(meta, indent=1) + "\n")
    for stage, name in (("vae", "autoencoder"), ("unet", "unet")):
        shutil.copy(run / f"{stage}.run" / "loss.csv", ROOT / "benchmarks" / "results" / f"mnist_latent_{name}_loss.csv")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
