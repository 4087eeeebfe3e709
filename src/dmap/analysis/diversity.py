"""Diversity of several restorations of one measurement."""

from __future__ import annotations

from torch import Tensor

from dmap.metrics import psnr


def diversity(samples: Tensor, truth: Tensor | None = None, posterior_mean: Tensor | None = None) -> dict:
    """For ``N`` samples ``[N, C, H, W]`` of one problem: mean per-pixel standard deviation,
    mean pairwise distance (RMS per pixel, over all pairs), and if given the PSNR of each
    sample and of the sample mean against ``truth``, and the RMS distance of the sample
    mean to the exact ``posterior_mean``."""
    n = len(samples)
    flat = samples.reshape(n, -1).double()
    d = flat.shape[1]
    pair = (flat.unsqueeze(0) - flat.unsqueeze(1)).pow(2).sum(-1).div(d).sqrt()
    out = {"n": n, "pixel_std": float(flat.std(0).mean()), "pairwise_rms": float(pair.sum() / (n * (n - 1))) if n > 1 else 0.0}
    mean = samples.mean(0, keepdim=True)
    if truth is not None:
        out["psnr_samples"] = psnr(samples, truth.expand_as(samples)).tolist()
        out["psnr_mean"] = float(psnr(mean, truth.reshape(mean.shape)))
    if posterior_mean is not None:
        out["mean_to_posterior_mean_rms"] = float(
            (mean.double().flatten() - posterior_mean.double().flatten()).pow(2).mean().sqrt()
        )
    return out
