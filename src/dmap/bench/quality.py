"""A benchmark's perceptual scores (``--metric-weights DIR``): LPIPS per image beside PSNR,
FID and KID per cell.  Each unit's Inception features (of each image's first sample) are
kept in ``features/<task>/<method>@<budget>/<first index>.npz`` as it is solved, so a
resumed or sharded run scores its cells like an uninterrupted one; the reference is the
cell's own ground-truth images (``features/reference.npz``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from dmap.bench.specs import BenchError
from dmap.bench.store import outputs_path, save_arrays
from dmap.metrics import frechet_distance, kernel_distance
from dmap.metrics.perceptual import inception_net, lpips_net, weights_dir
from dmap.priors.base import fingerprint
from dmap.utils import WeightsError


@dataclass(frozen=True)
class Perceptual:
    """The metric networks of a benchmark; built (and their files checked) on creation."""

    folder: Path
    metrics: tuple[str, ...]

    @classmethod
    def of(cls, weights: str | None, metrics: tuple[str, ...]) -> Perceptual | None:
        """``None`` without metrics; :class:`BenchError` naming a missing or mismatched file."""
        if not metrics:
            return None
        try:
            made = cls(weights_dir(weights), metrics)
            made.nets  # noqa: B018  (loads and checks every file now, before any solving)
        except WeightsError as e:
            raise BenchError(str(e)) from None
        return made

    @cached_property
    def nets(self) -> dict[str, torch.nn.Module]:
        return {m: inception_net(self.folder) if m == "fid" else lpips_net(self.folder, m.split("-")[1]) for m in self.metrics}

    def manifest(self) -> dict:
        """Which weights scored the benchmark: a fingerprint per network."""
        return {m: fingerprint(net.state_dict()) for m, net in self.nets.items()}

    @torch.no_grad()
    def per_image(self, out: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """LPIPS of each restoration against its truth (``out`` and ``x`` aligned), by key ``lpips_<net>``."""
        return {
            m.replace("-", "_"): self.nets[m].to(out.device)(out.float(), x.float().to(out.device)).cpu()
            for m in self.metrics
            if m != "fid"
        }

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> np.ndarray:
        """Inception pool3 features ``[N, 2048]`` (float64)."""
        net = self.nets["fid"]
        return torch.cat([net.to(x.device)(a.float()).double().cpu() for a in x.split(32)]).numpy()

    def keep_features(self, out: Path, task: str, method: str, nfe: int, index: list[int], x: torch.Tensor) -> None:
        """Store the features of a unit's restorations ``x`` (images at positions ``index``)."""
        if "fid" in self.metrics:
            folder = feature_folder(out, task, method, nfe)
            save_arrays(folder / f"{index[0]:06d}.npz", index=np.asarray(index), features=self.features(x))

    def set_scores(self, out: Path, reference: torch.Tensor, task: str, method: str, nfe: int) -> dict:
        """``fid``, ``kid`` and ``set_images`` of one cell: its stored features against those of
        the same positions of ``reference`` (the truth, features cached in ``features/reference.npz``)."""
        if "fid" not in self.metrics:
            return {}
        parts = [np.load(p) for p in sorted(feature_folder(out, task, method, nfe).glob("*.npz"))]
        if not parts:
            return {}
        index = np.concatenate([p["index"] for p in parts])
        mine = torch.from_numpy(np.concatenate([p["features"] for p in parts]))
        ref = torch.from_numpy(self.reference(out, reference)[index])
        if len(index) < 2:
            return {"set_images": len(index)}
        return {"fid": frechet_distance(mine, ref), "kid": kernel_distance(mine, ref), "set_images": len(index)}

    def reference(self, out: Path, x: torch.Tensor) -> np.ndarray:
        path = out / "features" / "reference.npz"
        if path.exists() and len(np.load(path)["features"]) == len(x):
            return np.load(path)["features"]
        feats = self.features(x)
        save_arrays(path, features=feats)
        return feats


def feature_folder(out: Path, task: str, method: str, nfe: int) -> Path:
    """``features/<task>/<method>@<budget>`` (the method spec made safe as in ``outputs/``)."""
    return out / "features" / outputs_path(out, task, method, nfe).relative_to(out / "outputs").with_suffix("")
