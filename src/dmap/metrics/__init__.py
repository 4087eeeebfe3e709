"""Image quality on images in [-1, 1]: per sample (PSNR and SSIM on the [0, 1] scale,
LPIPS) and per set (FID, KID; the digit classifier's Frechet distance).  LPIPS, FID and
KID read their networks' weights from files on disk (:mod:`dmap.metrics.perceptual`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dmap.metrics.perceptual import inception_features, lpips


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per sample ``[B]``, data range 1 on [0, 1]."""
    mse = (((x - ref) / 2) ** 2).reshape(x.shape[0], -1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-20))


def ssim(x: Tensor, ref: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity per sample ``[B]`` (Wang et al. 2004): Gaussian window
    11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, on [0, 1], valid region, channel mean."""
    a, b = (x.double() + 1) / 2, (ref.double() + 1) / 2
    C = a.shape[1]
    r = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    k = torch.outer(g, g).expand(C, 1, window, window).to(a.device)
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window} x {window}")

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, k, groups=C)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(s.shape[0], -1).mean(1).to(x.dtype)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a [m, d]``, ``b [n, d]``:
    ``||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017).  With
    centred features ``A``, ``B`` (``S_a = A^T A / (m-1)``), the nonzero eigenvalues of
    ``S_a S_b`` are the squared singular values of ``A B^T / sqrt((m-1)(n-1))``, so the
    trace of the square root is that matrix's nuclear norm: exact when ``m, n <= d``, where the
    covariances are singular; with more samples it is the sum of square roots of the
    eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)``."""
    a, b = a.double(), b.double()
    ma, mb = a.mean(0), b.mean(0)
    A, B = a - ma, b - mb
    m, n, d = len(a), len(b), a.shape[1]
    trace_a, trace_b = (A**2).sum() / (m - 1), (B**2).sum() / (n - 1)
    if max(m, n) <= d:
        cross = torch.linalg.svdvals(A @ B.T).sum() / math.sqrt((m - 1) * (n - 1))
    else:
        sa, sb = A.T @ A / (m - 1), B.T @ B / (n - 1)
        lam, q = torch.linalg.eigh(sa)
        root_a = (q * lam.clamp_min(0).sqrt()) @ q.T
        cross = torch.linalg.eigvalsh(root_a @ sb @ root_a).clamp_min(0).sqrt().sum()
    return float(((ma - mb) ** 2).sum() + trace_a + trace_b - 2 * cross)


def fd_mnist(x: Tensor, ref: Tensor) -> float:
    """``fd-mnist``: Frechet distance between the shipped digit classifier's features of
    ``x`` and of ``ref`` (both ``[N, 1, 32, 32]`` in [-1, 1])."""
    from dmap.classifier import features

    return frechet_distance(features(x), features(ref))


def kernel_distance(a: Tensor, b: Tensor) -> float:
    """KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD between feature
    sets ``a [m, d]`` and ``b [n, d]`` under the kernel ``k(u, v) = (u.v / d + 1)^3``,
    on the whole sets (``m, n >= 2``):
    ``sum_{i!=j} k(a_i, a_j) / m(m-1) + sum_{i!=j} k(b_i, b_j) / n(n-1) - 2 mean k(a_i, b_j)``."""
    a, b = a.double(), b.double()
    m, n, d = len(a), len(b), a.shape[1]
    if min(m, n) < 2:
        raise ValueError("KID needs at least two samples in each set")
    k = lambda u, v: (u @ v.T / d + 1) ** 3  # noqa: E731
    kaa, kbb = k(a, a), k(b, b)
    within = (kaa.sum() - kaa.trace()) / (m * (m - 1)) + (kbb.sum() - kbb.trace()) / (n * (n - 1))
    return float(within - 2 * k(a, b).mean())


def fid(x: Tensor, ref: Tensor, *, weights: str | Path | None = None) -> float:
    """FID between image sets ``x`` and ``ref`` in [-1, 1]: the Frechet distance of their
    Inception pool3 features (weights from the folder ``weights`` or ``$DMAP_METRIC_WEIGHTS``).
    With fewer images than 2048 the covariances are singular and FID is biased upwards:
    compare values only at equal set sizes."""
    return frechet_distance(inception_features(x, weights=weights), inception_features(ref, weights=weights))


def kid(x: Tensor, ref: Tensor, *, weights: str | Path | None = None) -> float:
    """KID between image sets ``x`` and ``ref`` in [-1, 1] on Inception pool3 features
    (:func:`kernel_distance`; unbiased at any set size)."""
    return kernel_distance(inception_features(x, weights=weights), inception_features(ref, weights=weights))


__all__ = ["psnr", "ssim", "lpips", "fid", "kid", "frechet_distance", "kernel_distance", "inception_features", "fd_mnist"]
