"""LPIPS, FID and KID from weight files on disk: nothing is downloaded.

The files are the ones users of the reference implementations already have, found in a
folder ``DIR`` (``--metric-weights DIR`` or ``$DMAP_METRIC_WEIGHTS``) under their
published names (a ``.safetensors`` file of the same stem is read instead when present):

==================  =======================================  ==================================
metric              file                                      from
==================  =======================================  ==================================
LPIPS (alex)        ``alexnet-owt-7be5be79.pth``              torchvision's AlexNet
                    ``alex.pth``                              the lpips package, weights/v0.1
LPIPS (vgg)         ``vgg16-397923af.pth``                    torchvision's VGG-16
                    ``vgg.pth``                               the lpips package, weights/v0.1
FID, KID            ``pt_inception-2015-12-05-6726825d.pth``  pytorch-fid's release
==================  =======================================  ==================================
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.metrics.inception import FIDInception
from dmap.metrics.lpips import LPIPS
from dmap.priors.checkpoint import read_state_dict
from dmap.utils import WeightsError

ENV = "DMAP_METRIC_WEIGHTS"
BACKBONE = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
HEAD = {"alex": "alex.pth", "vgg": "vgg.pth"}
INCEPTION = "pt_inception-2015-12-05-6726825d.pth"


def weights_dir(weights: str | Path | None) -> Path:
    """``weights``, else ``$DMAP_METRIC_WEIGHTS``; :class:`WeightsError` if neither names a folder."""
    folder = weights or os.environ.get(ENV)
    if not folder:
        raise WeightsError(f"LPIPS / FID / KID need weight files: give --metric-weights DIR or set {ENV}")
    if not Path(folder).is_dir():
        raise WeightsError(f"{folder}: no such folder (metric weights)")
    return Path(folder)


def weight_file(folder: Path, name: str) -> Path:
    """``folder/name``, or the ``.safetensors`` file of the same stem; :class:`WeightsError`
    naming the file when neither exists."""
    for path in (folder / Path(name).with_suffix(".safetensors").name, folder / name):
        if path.is_file():
            return path
    raise WeightsError(f"{folder / name}: no such file (metric weights; see docs/metrics.md)")


def load_into(net: nn.Module, parts: dict[Path, tuple[str, ...]], what: str) -> nn.Module:
    """Load ``net`` from several files: ``parts`` maps each file to the key prefixes it
    provides (its other keys, e.g. a classifier's, are ignored; so are batch norms'
    ``num_batches_tracked``).  :class:`WeightsError` naming the file and the first
    missing, mis-shaped or unexpected key."""
    used = lambda k, prefixes: k.startswith(prefixes) and not k.endswith("num_batches_tracked")  # noqa: E731
    own, state = net.state_dict(), {}
    for path, prefixes in parts.items():
        got = {k: v for k, v in read_state_dict(path).items() if used(k, prefixes)}
        mine = {k: v for k, v in own.items() if used(k, prefixes)}
        bad = [k for k in mine if k not in got or got[k].shape != mine[k].shape] + sorted(set(got) - set(mine))
        if bad:
            raise WeightsError(f"{path}: not the weights of {what} (first mismatch: {bad[0]})")
        state.update(got)
    net.load_state_dict(state, strict=False)
    return net.requires_grad_(False)


@lru_cache(maxsize=4)
def lpips_net(folder: Path, net: str = "alex") -> LPIPS:
    """The LPIPS network ``net`` (``alex`` or ``vgg``) with the weights of ``folder`` (cached)."""
    if net not in BACKBONE:
        raise ValueError(f"LPIPS net {net!r}: choose from {', '.join(BACKBONE)}")
    backbone, head = weight_file(folder, BACKBONE[net]), weight_file(folder, HEAD[net])
    return load_into(LPIPS(net), {backbone: ("features.",), head: ("lin",)}, f"LPIPS-{net}")


@lru_cache(maxsize=2)
def inception_net(folder: Path) -> FIDInception:
    """FID's Inception-v3 with the weights of ``folder`` (cached)."""
    return load_into(FIDInception(), {weight_file(folder, INCEPTION): ("Conv2d_", "Mixed_")}, "FID's Inception-v3")


@torch.no_grad()
def lpips(x: Tensor, ref: Tensor, *, net: str = "alex", weights: str | Path | None = None, batch: int = 64) -> Tensor:
    """LPIPS v0.1 per sample ``[B]`` between images ``x`` and ``ref`` in [-1, 1] (grey is
    repeated to RGB); ``weights`` the folder of the files (default ``$DMAP_METRIC_WEIGHTS``)."""
    model = lpips_net(weights_dir(weights), net).to(x.device)
    return torch.cat([model(a.float(), b.float()) for a, b in zip(x.split(batch), ref.split(batch))]).to(x.dtype)


@torch.no_grad()
def inception_features(x: Tensor, *, weights: str | Path | None = None, batch: int = 32) -> Tensor:
    """FID's pool3 features ``[N, 2048]`` (float64) of images ``x`` in [-1, 1]."""
    model = inception_net(weights_dir(weights)).to(x.device)
    return torch.cat([model(a.float()).double().cpu() for a in x.split(batch)])
