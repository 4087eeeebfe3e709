"""Image quality, per sample, on images in [-1, 1] (measured on the [0, 1] scale)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
    """Frechet distance between Gaussians fitted to feature sets ``a [N, k]``, ``b [M, k]``:
    ``||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017); the
    trace of the square root is the sum of square roots of the eigenvalues of
    ``S_a^(1/2) S_b S_a^(1/2)``."""
    a, b = a.double(), b.double()
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    lam, q = torch.linalg.eigh(sa)
    root_a = (q * lam.clamp_min(0).sqrt()) @ q.T
    cross = torch.linalg.eigvalsh(root_a @ sb @ root_a).clamp_min(0).sqrt().sum()
    return float(((ma - mb) ** 2).sum() + sa.trace() + sb.trace() - 2 * cross)


def fd_mnist(x: Tensor, ref: Tensor) -> float:
    """``fd-mnist``: Frechet distance between the shipped digit classifier's features of
    ``x`` and of ``ref`` (both ``[N, 1, 32, 32]`` in [-1, 1])."""
    from dmap.classifier import features

    return frechet_distance(features(x), features(ref))
