"""Parity of dmap's LPIPS, FID and KID with the reference implementations (the ``lpips``
package, pytorch-fid), on identical weights and images (its own environment: both pull in
torchvision; not part of CI).

    python3 -m venv .venv-peers && . .venv-peers/bin/activate && pip install lpips pytorch-fid && pip install -e .
    python benchmarks/peers/metrics_parity.py

Nothing is downloaded: the backbones (torchvision's AlexNet / VGG-16, pytorch-fid's
Inception-v3 with random batch-norm statistics) get seeded random weights (the Inception's batch norms
set to the statistics of smooth random images, so that its features do not collapse), the LPIPS heads
are the real v0.1 files the ``lpips`` wheel ships.  The same tensors are written into a
folder under their published names and read by dmap (:mod:`dmap.metrics.perceptual`); both
sides then score the same images: LPIPS per pair, pool3 features per image (through each
one's own resize and normalization), FID of two sets (pytorch-fid's
``calculate_frechet_distance``) and KID (the unbiased polynomial-kernel MMD, written out
here as a double loop).  Writes ``benchmarks/results/peers/metrics_parity.md``.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import lpips
import numpy as np
import pytorch_fid.inception as pfi
import torch
import torchvision
from pytorch_fid.fid_score import calculate_frechet_distance

import dmap.metrics as dm
from dmap.data import mnist_spread

OUT = Path(__file__).resolve().parent.parent / "results" / "peers" / "metrics_parity.md"
HEADS = Path(lpips.__file__).parent / "weights" / "v0.1"


def random_inception_state() -> dict:
    """pytorch-fid's Inception-v3 with seeded weights and batch-norm statistics."""
    pfi.load_state_dict_from_url = lambda *a, **k: pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    torch.manual_seed(1)
    net = pfi.fid_inception_v3()  # (its download replaced by a fresh torchvision Inception's state: the same keys)
    net.train()
    for m in net.modules():  # batch norms set to the statistics of natural-looking inputs: no collapse
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net(smooth(16, 3, 299, torch.Generator().manual_seed(1)))
    return net.eval().state_dict()


def smooth(n: int, c: int, size: int, g: torch.Generator, scale: int = 8) -> torch.Tensor:
    """Images in [-1, 1] with structure at ``size / scale`` pixels (bicubic upsampled noise)."""
    low = torch.rand(n, c, max(size // scale, 2), max(size // scale, 2), generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def write_weights(folder: Path) -> tuple[dict, dict]:
    """Seeded backbones into ``folder`` under the published names; the lpips heads copied."""
    torch.manual_seed(0)
    backbones = {"alex": torchvision.models.alexnet(weights=None), "vgg": torchvision.models.vgg16(weights=None)}
    for net, model in backbones.items():
        torch.save(model.state_dict(), folder / dm.perceptual.BACKBONE[net])
        shutil.copy(HEADS / f"{net}.pth", folder / dm.perceptual.HEAD[net])
    inception = random_inception_state()
    torch.save(inception, folder / dm.perceptual.INCEPTION)
    return backbones, inception


def reference_lpips(net: str, backbone: torch.nn.Module) -> lpips.LPIPS:
    """The lpips package's model (heads from its wheel) with ``backbone``'s features."""
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    feats = backbone.features
    for s in range(1, 6):
        piece = getattr(model.net, f"slice{s}")
        for name, module in piece.named_children():
            module.load_state_dict(feats[int(name)].state_dict())
    return model


def kid_loops(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD^2 estimate, term by term."""
    d = a.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return float(xx + yy - 2 * xy)


def main() -> None:
    g = torch.Generator().manual_seed(2)
    digits, _ = mnist_spread(48, "test")
    images = {
        "RGB 64 px, smooth at 8 vs 4 px": (smooth(24, 3, 64, g, 8), smooth(24, 3, 64, g, 4)),
        "grey 32 px, digits vs digits": (digits[:24], digits[24:]),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        folder = Path(tmp)
        backbones, inception_state = write_weights(folder)
        pfi.load_state_dict_from_url = lambda *a, **k: inception_state  # what dmap reads from the folder
        ref_inception = pfi.InceptionV3([3]).eval()
        for label, (x, y) in images.items():
            rgb = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731
            for net in ("alex", "vgg"):
                theirs = reference_lpips(net, backbones[net])(rgb(x), rgb(y)).flatten()
                mine = dm.lpips(x, y, net=net, weights=folder)
                rows.append((label, f"LPIPS-{net} per pair", _err(mine, theirs), float(theirs.abs().max())))
            f_theirs = [ref_inception((rgb(t) + 1) / 2)[0].flatten(1).double() for t in (x, y)]
            f_mine = [dm.inception_features(t, weights=folder) for t in (x, y)]
            rows.append((label, "pool3 features", _err(torch.cat(f_mine), torch.cat(f_theirs)), float(f_theirs[0].abs().max())))
            stats = [(f.numpy().mean(0), np.cov(f.numpy(), rowvar=False)) for f in f_theirs]
            fid_theirs = calculate_frechet_distance(*stats[0], *stats[1])
            fid_mine = dm.fid(x, y, weights=folder)
            rows.append((label, "FID of the two sets", abs(fid_mine - fid_theirs) / abs(fid_theirs), fid_theirs))
            kid_theirs = kid_loops(*(f.numpy() for f in f_theirs))
            kid_mine = dm.kid(x, y, weights=folder)
            rows.append((label, "KID of the two sets", abs(kid_mine - kid_theirs) / abs(kid_theirs), kid_theirs))
    table = "| images | quantity | max relative difference | reference value (max) |\n|---|---|---|---|\n"
    table += "\n".join(f"| {a} | {b} | {c:.1e} | {d:.4g} |" for a, b, c, d in rows) + "\n"
    text = (
        f"# dmap metrics vs lpips {version('lpips')} and pytorch-fid {version('pytorch-fid')}\n\n"
        f"torch {torch.__version__}, torchvision {torchvision.__version__}; 24 + 24 images per row; "
        "command: `python benchmarks/peers/metrics_parity.py`\n\n" + table
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


if __name__ == "__main__":
    main()
