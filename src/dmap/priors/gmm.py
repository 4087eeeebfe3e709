"""The exact Gaussian-mixture prior and its exact posteriors (DESIGN.md section 3).

``p(x0) = sum_k pi_k N(mu_k, Sigma_k)`` with ``Sigma_k = Q_k diag(l_k) Q_k^T``.  Under
the forward process ``x_t = sqrt(ab) x0 + sqrt(1 - ab) e`` every component stays
Gaussian, ``N(sqrt(ab) mu_k, Q_k diag(ab l_k + 1 - ab) Q_k^T)``, so the score of
``p_t`` is exact and costs two matrix products.  For a linear measurement
``y = A x0 + sigma_y n`` the posterior is again a mixture with the same structure,
which gives exact posterior samples, the MMSE estimate and the exact conditional
score ``grad log p_t(x_t | y)``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from dmap.priors.base import Prior
from dmap.schedule import Schedule

LOG_2PI = math.log(2 * math.pi)


class GaussianMixture:
    """A Gaussian mixture in R^d, stored in float64 as weights, means and
    eigendecompositions: ``log_weights [K]``, ``means [K, d]``, ``eigvecs [K, d, d]``
    (columns are eigenvectors), ``eigvals [K, d]`` (all > 0)."""

    def __init__(self, log_weights: Tensor, means: Tensor, eigvecs: Tensor, eigvals: Tensor) -> None:
        self.log_weights = torch.log_softmax(log_weights.double(), 0)
        self.means = means.double()
        self.eigvecs = eigvecs.double()
        self.eigvals = eigvals.double()
        if (self.eigvals <= 0).any():
            raise ValueError("covariances must be positive definite")
        self._cast: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(Q_cat [d, K*d], mean projections mu_k^T Q_k [K, d], eigvals)`` in the dtype
        and device of ``like``, cached."""
        key = (like.dtype, like.device)
        if key not in self._cast:
            q_cat = self.eigvecs.permute(1, 0, 2).reshape(self.d, self.K * self.d)
            mu_q = torch.einsum("kd,kde->ke", self.means, self.eigvecs)
            self._cast[key] = tuple(a.to(like) for a in (q_cat, mu_q, self.eigvals))
        return self._cast[key]

    def _whiten(self, x: Tensor, ab: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For ``x [B, d]`` and ``ab [B, 1]``: coordinates ``z = Q_k^T (x - sqrt(ab) mu_k)``
        ``[B, K, d]``, variances ``v = ab l_k + 1 - ab`` and the log densities of each
        component ``[B, K]``."""
        q_cat, mu_q, lam = self._params(x)
        ab = ab.reshape(-1, 1, 1)
        z = (x @ q_cat).reshape(x.shape[0], self.K, self.d) - ab.sqrt() * mu_q
        v = ab * lam + (1 - ab)
        log_n = -0.5 * ((z * z / v).sum(-1) + v.log().sum(-1) + self.d * LOG_2PI)
        return z, v, log_n

    def log_prob(self, x: Tensor, ab: Tensor | float = 1.0) -> Tensor:
        """``log p_t(x)`` of the noised mixture, ``x [B, d]``, ``ab`` scalar or ``[B, 1]``."""
        ab = torch.as_tensor(ab, dtype=x.dtype, device=x.device).reshape(-1, 1)
        _, _, log_n = self._whiten(x, ab)
        return torch.logsumexp(log_n + self.log_weights.to(x), dim=1)

    def score(self, x: Tensor, ab: Tensor | float = 1.0) -> Tensor:
        """``grad_x log p_t(x) = -sum_k w_k(x) Q_k diag(1/v_k) Q_k^T (x - sqrt(ab) mu_k)``
        with responsibilities ``w_k(x)``; ``x [B, d]``, ``ab`` scalar or ``[B, 1]``."""
        ab = torch.as_tensor(ab, dtype=x.dtype, device=x.device).reshape(-1, 1)
        z, v, log_n = self._whiten(x, ab)
        w = torch.softmax(log_n + self.log_weights.to(x), dim=1)
        q_cat = self._params(x)[0]
        return -((w.unsqueeze(-1) * z / v).reshape(x.shape[0], -1) @ q_cat.T)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples ``[n, d]`` (float64)."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        return self.means[k] + torch.einsum("nde,ne->nd", self.eigvecs[k], self.eigvals[k].sqrt() * z)

    def mean(self) -> Tensor:
        """Mixture mean ``sum_k pi_k mu_k`` ``[d]``."""
        return self.log_weights.exp() @ self.means

    def variance(self) -> Tensor:
        """Per-coordinate variance ``[d]``: ``sum_k pi_k (diag Sigma_k + mu_k^2) - mean^2``."""
        diag = torch.einsum("kde,ke->kd", self.eigvecs**2, self.eigvals)
        return self.log_weights.exp() @ (diag + self.means**2) - self.mean() ** 2

    def covariances(self) -> Tensor:
        """Dense ``Sigma_k`` ``[K, d, d]``."""
        return torch.einsum("kde,ke,kfe->kdf", self.eigvecs, self.eigvals, self.eigvecs)

    def condition(self, A: Tensor, sigma_y: float) -> "LinearGaussianPosterior":
        """The posterior family ``p(x0 | y)`` for ``y = A x0 + sigma_y n``, ``A [m, d]``."""
        return LinearGaussianPosterior(self, A, sigma_y)


class LinearGaussianPosterior:
    """``p(x0 | y)`` of a Gaussian mixture under a linear Gaussian measurement.

    Component k: ``S_k = A Sigma_k A^T + sigma_y^2 I``, gain ``G_k = Sigma_k A^T S_k^-1``,
    mean ``mu_k + G_k (y - A mu_k)``, covariance ``Sigma_k - G_k A Sigma_k`` (independent
    of y), weight ``propto pi_k N(y; A mu_k, S_k)``.
    """

    def __init__(self, prior: GaussianMixture, A: Tensor, sigma_y: float) -> None:
        if sigma_y <= 0:
            raise ValueError("the exact posterior needs sigma_y > 0")
        self.prior = prior
        self.A = A.double()
        m = self.A.shape[0]
        sigma = prior.covariances()  # [K, d, d]
        sigma_at = sigma @ self.A.T  # [K, d, m]
        S = self.A @ sigma_at + sigma_y**2 * torch.eye(m, dtype=torch.float64)
        self._chol = torch.linalg.cholesky(S)
        self._gain = torch.linalg.solve(S, sigma_at.transpose(1, 2)).transpose(1, 2)  # S symmetric
        self._a_mu = prior.means @ self.A.T  # [K, m]
        self._logdet = 2 * self._chol.diagonal(dim1=1, dim2=2).log().sum(-1)
        self._sigma = sigma

    def log_weights(self, y: Tensor) -> Tensor:
        """Posterior component log-weights ``[N, K]`` for ``y [N, m]``."""
        r = (y.double().unsqueeze(1) - self._a_mu).unsqueeze(-1)  # [N, K, m, 1]
        sol = torch.linalg.solve_triangular(self._chol, r, upper=False).squeeze(-1)
        log_ev = -0.5 * ((sol**2).sum(-1) + self._logdet + self.A.shape[0] * LOG_2PI)
        return torch.log_softmax(log_ev + self.prior.log_weights, dim=1)

    def component_means(self, y: Tensor) -> Tensor:
        """Posterior component means ``[N, K, d]``."""
        r = y.double().unsqueeze(1) - self._a_mu  # [N, K, m]
        return self.prior.means + torch.einsum("kdm,nkm->nkd", self._gain, r)

    def mean(self, y: Tensor) -> Tensor:
        """The posterior mean (MMSE estimate) ``E[x0 | y]`` ``[N, d]``."""
        return torch.einsum("nk,nkd->nd", self.log_weights(y).exp(), self.component_means(y))

    @cached_property
    def _eig(self) -> tuple[Tensor, Tensor]:
        cov = self._sigma - self._gain @ (self.A @ self._sigma)
        lam, q = torch.linalg.eigh(0.5 * (cov + cov.transpose(1, 2)))
        return q, lam.clamp_min(1e-12)

    def at(self, y: Tensor) -> GaussianMixture:
        """The posterior mixture ``p(x0 | y)`` for one measurement ``y [m]``."""
        q, lam = self._eig
        y = y.reshape(1, -1)
        return GaussianMixture(self.log_weights(y)[0], self.component_means(y)[0], q, lam)


def fit_mixture(
    x: Tensor, labels: Tensor, per_class: int = 2, floor: float = 2e-3, iters: int = 20
) -> GaussianMixture:
    """Fit a mixture to ``x [N, d]``: ``per_class`` k-means clusters within each label
    (deterministic farthest-point start), each a Gaussian with the cluster's mean and
    covariance plus ``floor * I``; weights are the cluster fractions."""
    x = x.double()
    weights, means, covs = [], [], []
    for c in labels.unique():
        xc = x[labels == c]
        centers = xc[:1]
        for _ in range(per_class - 1):
            far = torch.cdist(xc, centers).min(1).values.argmax()
            centers = torch.cat([centers, xc[far : far + 1]])
        for _ in range(iters):
            assign = torch.cdist(xc, centers).argmin(1)
            centers = torch.stack([xc[assign == j].mean(0) for j in range(per_class)])
        for j in range(per_class):
            xj = xc[assign == j]
            weights.append(len(xj))
            means.append(xj.mean(0))
            covs.append(torch.cov(xj.T, correction=1) + floor * torch.eye(x.shape[1], dtype=torch.float64))
    lam, q = torch.linalg.eigh(torch.stack(covs))
    return GaussianMixture(torch.tensor(weights, dtype=torch.float64).log(), torch.stack(means), q, lam.clamp_min(floor))


class GMMPrior(Prior):
    """A diffusion prior whose data distribution is a :class:`GaussianMixture` on the
    flattened image; its score is exact at every timestep."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, shape: tuple[int, int, int], name: str):
        super().__init__(schedule, shape)
        if math.prod(shape) != mixture.d:
            raise ValueError(f"mixture dimension {mixture.d} does not match shape {shape}")
        self.mixture = mixture
        self.name = name

    def score(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        flat = x_t.reshape(x_t.shape[0], -1)
        return self.mixture.score(flat, self.schedule.ab(t, flat)).reshape(x_t.shape)


def cache_dir() -> Path:
    """Where fitted artefacts are cached: ``$DMAP_CACHE_DIR`` or ``~/.cache/dmap``."""
    return Path(os.environ.get("DMAP_CACHE_DIR") or Path.home() / ".cache" / "dmap")


def load_gmm_mnist(per_class: int = 2, floor: float = 2e-3) -> GMMPrior:
    """``gmm-mnist``: ``per_class`` x 10 components fitted on the bundled train digits
    (32 x 32), cached in :func:`cache_dir` keyed by the data and the fit settings."""
    from safetensors.torch import load_file, save_file

    from dmap.data import mnist

    images, labels = mnist("train")
    key = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:12]
    path = cache_dir() / f"gmm-mnist-{key}-k{per_class}-f{floor:g}.safetensors"
    if path.exists():
        t = load_file(path)
        mixture = GaussianMixture(t["log_weights"], t["means"], t["eigvecs"], t["eigvals"])
    else:
        start = time.perf_counter()
        mixture = fit_mixture(images.reshape(len(images), -1), labels, per_class, floor)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tensors = dict(log_weights=mixture.log_weights, means=mixture.means,
                       eigvecs=mixture.eigvecs, eigvals=mixture.eigvals)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"fit_seconds": f"{time.perf_counter() - start:.1f}"})
        os.replace(tmp, path)
    return GMMPrior(mixture, Schedule.linear(), (1, 32, 32), "gmm-mnist")
