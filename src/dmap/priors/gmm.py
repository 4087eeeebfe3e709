"""The exact Gaussian-mixture prior and its exact posteriors (docs/methods.md).

``p(x0) = sum_k pi_k N(mu_k, Sigma_k)`` with ``Sigma_k = Q_k diag(l_k) Q_k^T``.  Under
the forward process ``x_t = sqrt(ab) x0 + sqrt(1 - ab) e`` every component stays
Gaussian, ``N(sqrt(ab) mu_k, Q_k diag(ab l_k + 1 - ab) Q_k^T)``, so the score of
``p_t`` is exact and costs two matrix products.  For a linear measurement
``y = A x0 + sigma_y n`` the posterior is again a mixture with the same structure,
which gives exact posterior samples, the MMSE estimate and the exact conditional
score ``grad log p_t(x_t | y)``.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

from dmap.priors.base import Prior, fingerprint
from dmap.schedule import Schedule

LOG_2PI = math.log(2 * math.pi)


class GaussianMixture:
    """A Gaussian mixture in R^d, stored in float64 in principal-subspace form.

    Component k has mean ``mu_k``, orthonormal directions ``Q_k [d, r]`` with variances
    ``l_k [r]`` along them, and variance ``s_k`` in every direction orthogonal to them::

        Sigma_k = Q_k diag(l_k) Q_k^T + s_k (I - Q_k Q_k^T)

    (a mixture of probabilistic PCA models; ``r = d`` gives a general covariance and
    ``s_k`` is unused).  Arguments: ``log_weights [K]``, ``means [K, d]``,
    ``eigvecs [K, d, r]``, ``eigvals [K, r]``, ``residual [K]``.
    """

    def __init__(
        self, log_weights: Tensor, means: Tensor, eigvecs: Tensor, eigvals: Tensor, residual: Tensor | None = None
    ) -> None:
        self.log_weights = torch.log_softmax(log_weights.double(), 0)
        self.means = means.double()
        self.eigvecs = eigvecs.double()
        self.eigvals = eigvals.double()
        self.residual = (torch.ones(self.K) if residual is None else residual).double()
        if (self.eigvals <= 0).any() or (self.r < self.d and (self.residual <= 0).any()):
            raise ValueError("covariances must be positive definite")
        self._cast: dict[tuple, tuple[Tensor, ...]] = {}

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def r(self) -> int:
        return self.eigvecs.shape[2]

    def _params(self, like: Tensor) -> tuple[Tensor, ...]:
        """``Q_cat [d, K*r]``, ``mu_k^T Q_k [K, r]``, means, ``|mu_k|^2``, eigvals, residual
        variances, log weights; in the dtype and device of ``like``, cached."""
        key = (like.dtype, like.device)
        if key not in self._cast:
            q_cat = self.eigvecs.permute(1, 0, 2).reshape(self.d, self.K * self.r)
            mu_q = torch.einsum("kd,kde->ke", self.means, self.eigvecs)
            parts = (q_cat, mu_q, self.means, (self.means**2).sum(1), self.eigvals, self.residual, self.log_weights)
            self._cast[key] = tuple(a.to(like) for a in parts)
        return self._cast[key]

    def _components(self, x: Tensor, ab: Tensor) -> tuple[Tensor, ...]:
        """For ``x [B, d]`` and ``ab [B, 1]``, with ``u_k = x - sqrt(ab) mu_k``: principal
        coordinates ``z = Q_k^T u_k [B, K, r]``, their variances ``v = ab l_k + 1 - ab``, the
        residual variances ``v_c = ab s_k + 1 - ab [B, K]`` and the component log-densities
        ``log N(x; sqrt(ab) mu_k, ab Sigma_k + (1 - ab) I)`` ``[B, K]``."""
        q_cat, mu_q, means, mu_sq, lam, res, _ = self._params(x)
        B, a = x.shape[0], ab.reshape(-1, 1)
        z = (x @ q_cat).reshape(B, self.K, self.r) - a.unsqueeze(-1).sqrt() * mu_q
        v = a.unsqueeze(-1) * lam + (1 - a.unsqueeze(-1))
        v_c = a * res + (1 - a)
        quad = (z * z / v).sum(-1)
        log_det = v.log().sum(-1)
        if self.r < self.d:  # |u|^2 - |z|^2: the energy outside the principal subspace
            u_sq = (x * x).sum(1, keepdim=True) - 2 * a.sqrt() * (x @ means.T) + a * mu_sq
            quad = quad + (u_sq - (z * z).sum(-1)).clamp_min(0) / v_c
            log_det = log_det + (self.d - self.r) * v_c.log()
        return z, v, v_c, -0.5 * (quad + log_det + self.d * LOG_2PI)

    def _ab(self, x: Tensor, ab: Tensor | float) -> Tensor:
        return torch.as_tensor(ab, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)

    def log_prob(self, x: Tensor, ab: Tensor | float = 1.0) -> Tensor:
        """``log p_t(x)`` of the noised mixture, ``x [B, d]``, ``ab`` scalar or ``[B, 1]``."""
        log_n = self._components(x, self._ab(x, ab))[3]
        return torch.logsumexp(log_n + self._params(x)[6], dim=1)

    def score(self, x: Tensor, ab: Tensor | float = 1.0) -> Tensor:
        """``grad_x log p_t(x) = -sum_k w_k(x) (ab Sigma_k + (1 - ab) I)^-1 u_k`` with the
        responsibilities ``w_k(x)``; ``x [B, d]``, ``ab`` scalar or ``[B, 1]``.  In the
        principal form, ``(...)^-1 u_k = Q_k (z_k / v_k - z_k / v_c) + u_k / v_c``."""
        a = self._ab(x, ab)
        z, v, v_c, log_n = self._components(x, a)
        q_cat, _, means, _, _, _, log_w = self._params(x)
        w = torch.softmax(log_n + log_w, dim=1)
        if self.r == self.d:
            return -((w.unsqueeze(-1) * z / v).reshape(x.shape[0], -1) @ q_cat.T)
        coef = w.unsqueeze(-1) * z * (1 / v - 1 / v_c.unsqueeze(-1))
        wc = w / v_c
        return -(coef.reshape(x.shape[0], -1) @ q_cat.T + wc.sum(1, keepdim=True) * x - a.sqrt() * (wc @ means))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples ``[n, d]`` (float64)."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.r, generator=generator, dtype=torch.float64)
        e = torch.randn(n, self.d, generator=generator, dtype=torch.float64) if self.r < self.d else None
        x = torch.empty(n, self.d, dtype=torch.float64)
        for j in k.unique().tolist():  # one component at a time: no per-sample copies of Q
            rows = k == j
            q = self.eigvecs[j]
            x[rows] = self.means[j] + (self.eigvals[j].sqrt() * z[rows]) @ q.T
            if e is not None:  # isotropic part, orthogonal to the principal directions
                x[rows] += self.residual[j].sqrt() * (e[rows] - (e[rows] @ q) @ q.T)
        return x

    def mean(self) -> Tensor:
        """Mixture mean ``sum_k pi_k mu_k`` ``[d]``."""
        return self.log_weights.exp() @ self.means

    def variance(self) -> Tensor:
        """Per-coordinate variance ``[d]``: ``sum_k pi_k (diag Sigma_k + mu_k^2) - mean^2``."""
        diag = torch.einsum("kde,ke->kd", self.eigvecs**2, self._excess())
        if self.r < self.d:
            diag = diag + self.residual.unsqueeze(1)
        return self.log_weights.exp() @ (diag + self.means**2) - self.mean() ** 2

    def covariances(self) -> Tensor:
        """Dense ``Sigma_k`` ``[K, d, d]``."""
        cov = torch.einsum("kde,ke,kfe->kdf", self.eigvecs, self._excess(), self.eigvecs)
        if self.r < self.d:
            cov = cov + self.residual[:, None, None] * torch.eye(self.d, dtype=torch.float64)
        return cov

    def _excess(self) -> Tensor:
        """Variances along ``Q_k`` in excess of the isotropic part ``s_k`` ``[K, r]``."""
        return self.eigvals - self.residual.unsqueeze(1) if self.r < self.d else self.eigvals

    def tensors(self) -> dict[str, Tensor]:
        """The parameters by name (for saving: ``GaussianMixture(**tensors)`` rebuilds it)."""
        return {
            "log_weights": self.log_weights,
            "means": self.means,
            "eigvecs": self.eigvecs,
            "eigvals": self.eigvals,
            "residual": self.residual,
        }

    def condition(self, A: Tensor, sigma_y: float) -> LinearGaussianPosterior:
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
    x: Tensor, labels: Tensor, per_class: int = 2, rank: int = 96, floor: float = 1e-3, iters: int = 20
) -> GaussianMixture:
    """Fit a mixture to ``x [N, d]``: ``per_class`` k-means clusters within each label
    (deterministic farthest-point start), each a probabilistic-PCA Gaussian: the cluster
    mean, the top ``rank`` eigenpairs of its covariance, and the mean of the remaining
    eigenvalues as the residual variance (Tipping & Bishop 1999), all floored at
    ``floor``; weights are the cluster fractions."""
    x = x.double()
    weights, means, vecs, vals, residuals = [], [], [], [], []
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
            lam, q = torch.linalg.eigh(torch.cov(xj.T, correction=1))
            lam, q = lam.flip(0).clamp_min(floor), q.flip(1)
            weights.append(len(xj))
            means.append(xj.mean(0))
            vecs.append(q[:, :rank])
            vals.append(lam[:rank])
            residuals.append(lam[rank:].mean().clamp_min(floor) if rank < len(lam) else torch.tensor(1.0))
    return GaussianMixture(
        torch.tensor(weights, dtype=torch.float64).log(),
        torch.stack(means),
        torch.stack(vecs),
        torch.stack(vals),
        torch.stack(residuals),
    )


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
        # float64 throughout: the exact score is then the same, to float32 rounding, whatever
        # the batch it is computed in (BLAS kernels differ with the batch size)
        flat = x_t.reshape(x_t.shape[0], -1).double()
        return self.mixture.score(flat, self.schedule.ab(t, flat)).reshape(x_t.shape).to(x_t.dtype)

    def fingerprint(self) -> str:
        return fingerprint(self.mixture.tensors())
