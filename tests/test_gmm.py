import math

import pytest
import torch

from conftest import dense_log_normal, random_mixture
from dmap.operators.base import LinearOperator
from dmap.operators.physics import Physics
from dmap.priors.gmm import GMMPrior
from dmap.schedule import Schedule
from dmap.solvers import DPSOptions, solve_dps


@pytest.mark.parametrize("r", [3, 8])
@pytest.mark.parametrize("ab", [0.9999, 0.5, 0.02])
def test_score_is_gradient_of_log_density(r, ab):
    m = random_mixture(d=8, K=3, r=r, seed=0)
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    (grad,) = torch.autograd.grad(m.log_prob(x, ab).sum(), x)
    torch.testing.assert_close(m.score(x, ab), grad, rtol=1e-10, atol=1e-10)


def test_log_density_matches_dense_gaussians():
    m = random_mixture(d=6, K=2, r=2, seed=3)
    ab = 0.3
    cov = ab * m.covariances() + (1 - ab) * torch.eye(6, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    comps = torch.stack([dense_log_normal(x, math.sqrt(ab) * m.means[k], cov[k]) for k in range(2)], 1)
    torch.testing.assert_close(m.log_prob(x, ab), torch.logsumexp(comps + m.log_weights, 1))


def test_samples_match_mean_and_variance():
    m = random_mixture(d=6, K=3, r=2, seed=4)
    s = m.sample(40000, generator=torch.Generator().manual_seed(0))
    se = (m.variance() / 40000).sqrt()
    assert ((s.mean(0) - m.mean()).abs() < 5 * se).all()
    torch.testing.assert_close(s.var(0), m.variance(), rtol=0.05, atol=0)


def test_one_component_posterior_is_the_gaussian_closed_form():
    m = random_mixture(d=6, K=1, r=6, seed=5)
    g = torch.Generator().manual_seed(6)
    A = torch.randn(3, 6, dtype=torch.float64, generator=g)
    sigma_y = 0.2
    y = torch.randn(1, 3, dtype=torch.float64, generator=g)
    post = m.condition(A, sigma_y).at(y[0])
    sigma = m.covariances()[0]
    prec = torch.linalg.inv(sigma) + A.T @ A / sigma_y**2
    cov = torch.linalg.inv(prec)
    mean = cov @ (torch.linalg.solve(sigma, m.means[0]) + A.T @ y[0] / sigma_y**2)
    torch.testing.assert_close(post.mean(), mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(post.covariances()[0], cov, rtol=1e-8, atol=1e-10)


def test_posterior_weights_are_proportional_to_evidence():
    m = random_mixture(d=5, K=3, r=2, seed=7)
    g = torch.Generator().manual_seed(8)
    A = torch.randn(2, 5, dtype=torch.float64, generator=g)
    y = torch.randn(4, 2, dtype=torch.float64, generator=g)
    fam = m.condition(A, 0.3)
    S = A @ m.covariances() @ A.T + 0.09 * torch.eye(2, dtype=torch.float64)
    ev = torch.stack([dense_log_normal(y, A @ m.means[k], S[k]) for k in range(3)], 1)
    torch.testing.assert_close(fam.log_weights(y), torch.log_softmax(ev + m.log_weights, 1))


class Matrix(LinearOperator):
    def __init__(self, M, x_shape):
        super().__init__(x_shape, (M.shape[0],))
        self.register_buffer("M", M)

    def A(self, x):
        return x.reshape(x.shape[0], -1) @ self.M.T.to(x)


@pytest.mark.slow
def test_reverse_process_with_exact_conditional_score_samples_the_posterior():
    """1000 ancestral steps driven by the exact score of p_t(x_t | y) (a GMM prior whose
    mixture is the posterior) must reproduce the exact posterior mean and variance.
    This checks the schedule, the reverse step and the sampler loop together."""
    m = random_mixture(d=8, K=3, r=3, seed=9, scale=0.3)
    g = torch.Generator().manual_seed(10)
    A = torch.randn(4, 8, dtype=torch.float64, generator=g)
    y = A @ m.sample(1, generator=g)[0] + 0.1 * torch.randn(4, generator=g, dtype=torch.float64)
    post = m.condition(A, 0.1).at(y)
    conditional = GMMPrior(post, Schedule.linear(), (1, 2, 4), "posterior")
    n = 4000
    op = Matrix(A, (1, 2, 4))
    options = DPSOptions(steps=1000, step_size=0.0, clamp=False)
    x = solve_dps(
        conditional,
        Physics(op, torch.full((n,), 0.1)),
        y.expand(n, 4).clone(),
        options.grid(conditional.schedule),
        options,
        generator=torch.Generator().manual_seed(11),
    )
    x = x.reshape(n, -1)
    # the solver clamps its output to [-1, 1]: this posterior lies well inside
    assert (post.sample(20000, torch.Generator().manual_seed(0)).abs() < 1).all()
    var = post.variance()
    se = (var / n).sqrt()
    assert ((x.mean(0) - post.mean()).abs() < 5 * se).all()
    torch.testing.assert_close(x.var(0), var, rtol=0.12, atol=0)


def test_gmm_mnist(gmm_prior):
    m = gmm_prior.mixture
    assert m.K >= 10 and m.d == 32 * 32 and gmm_prior.shape == (1, 32, 32)
    x = torch.zeros(2, 1, 32, 32)
    eps = gmm_prior.eps(x, torch.tensor([10, 900]))
    assert eps.shape == x.shape and eps.dtype == torch.float32 and torch.isfinite(eps).all()


@pytest.mark.parametrize("t", [0, 300, 999])
def test_prior_eps_is_the_gaussian_closed_form(t):
    """One Gaussian N(mu, Sigma): x_t ~ N(sqrt(ab) mu, ab Sigma + (1 - ab) I), so
    eps(x_t) = sqrt(1 - ab) (ab Sigma + (1 - ab) I)^-1 (x_t - sqrt(ab) mu), by dense algebra."""
    m = random_mixture(d=8, K=1, r=3, seed=9)
    prior = GMMPrior(m, Schedule.linear(), (1, 2, 4), "one")
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ab = float(prior.schedule.alpha_bar[t])
    cov = ab * m.covariances()[0] + (1 - ab) * torch.eye(8, dtype=torch.float64)
    expected = (1 - ab) ** 0.5 * torch.linalg.solve(cov, (x - ab**0.5 * m.means[0]).T).T
    got = prior.eps(x.reshape(5, 1, 2, 4), t).reshape(5, 8)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_unconditional_sampler_reproduces_the_mixture():
    from dmap.solvers.sample import sample_prior

    m = random_mixture(d=8, K=3, r=3, seed=12, scale=0.3)
    prior = GMMPrior(m, Schedule.linear(), (1, 2, 4), "tiny")
    n = 4000
    x = sample_prior(prior, n, steps=1000, generator=torch.Generator().manual_seed(0)).double().reshape(n, -1)
    se = (m.variance() / n).sqrt()
    assert ((x.mean(0) - m.mean()).abs() < 5 * se).all()
    torch.testing.assert_close(x.var(0), m.variance(), rtol=0.12, atol=0)
