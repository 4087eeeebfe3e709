"""Denoisers of every parametrization, checked on an exact Gaussian mixture written in each:
the adapters must give the native prior's x0 and eps, the same DPS run, and the exact
posterior mean when they wrap the exact posterior."""

import math

import pytest
import torch

from conftest import random_mixture
from dmap import from_denoiser, make_task, solve
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators
from dmap.schedule import Schedule
from dmap.solvers.sample import sample_prior

SHAPE = (1, 4, 4)
SIGMA_DATA = 0.5


def ve_denoiser(mixture):
    """``D(x, sigma) = x + sigma^2 grad log p_sigma(x)`` with ``p_sigma = sum_k pi_k N(mu_k,
    Sigma_k + sigma^2 I)``, the density of ``x0 + sigma n``; it is the VP density at
    ``ab = 1 / (1 + sigma^2)`` of ``sqrt(ab) x``, hence the chain rule below."""

    def D(x, sigma):
        flat = x.reshape(len(x), -1).double()
        s = sigma.double().reshape(-1, 1).expand(len(x), 1)
        ab = 1 / (1 + s**2)
        score = ab.sqrt() * mixture.score(ab.sqrt() * flat, ab)
        return (flat + s**2 * score).reshape(x.shape).to(x.dtype)

    return D


def written_as(kind, mixture, native):
    D = ve_denoiser(mixture)
    if kind == "ve":
        return D
    if kind == "edm":  # F such that D = c_skip x + c_out F(c_in x, ln(sigma) / 4)

        def F(u, c_noise):
            sigma = (4 * c_noise.double()).exp().reshape(-1, 1, 1, 1)
            norm = (sigma**2 + SIGMA_DATA**2).sqrt()
            x = (u * norm).to(u.dtype)
            c_skip, c_out = SIGMA_DATA**2 / norm**2, sigma * SIGMA_DATA / norm
            return ((D(x, sigma.reshape(-1)) - c_skip * x) / c_out).to(u.dtype)

        return F
    if kind == "flow":  # x_s = (1 - s) x0 + s eps: x_s / (1 - s) is x0 plus noise of level s / (1 - s)

        def v(x_s, s):
            s4 = s.double().reshape(-1, 1, 1, 1)
            x0 = D((x_s / (1 - s4)).to(x_s.dtype), (s4 / (1 - s4)).reshape(-1).to(x_s.dtype)).double()
            eps = (x_s - (1 - s4) * x0) / s4
            return (eps - x0).to(x_s.dtype)

        return v
    return native.x0 if kind == "x0" else native.eps


KINDS = ["eps", "x0", "ve", "edm", "flow"]


@pytest.fixture(scope="module")
def mixture():
    return random_mixture(d=16, K=2, r=4, seed=0, scale=0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_every_parametrization_gives_the_native_x0_and_eps(kind, mixture):
    native = GMMPrior(mixture, Schedule.linear(), SHAPE, "tiny")
    prior = from_denoiser(written_as(kind, mixture, native), kind, SHAPE, sigma_data=SIGMA_DATA)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (999, 500, 20, 0):
        torch.testing.assert_close(prior.x0(x, t), native.x0(x, t), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(prior.eps(x, t), native.eps(x, t), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(prior.x0(x, -1), x)  # the clean image at t = -1


@pytest.mark.parametrize("kind", ["ve", "edm", "flow"])
def test_dps_through_a_wrapped_mixture_equals_dps_through_the_native_one(kind, mixture):
    native = GMMPrior(mixture, Schedule.linear(), SHAPE, "tiny")
    prior = from_denoiser(written_as(kind, mixture, native), kind, SHAPE, sigma_data=SIGMA_DATA, name="tiny")
    task = make_task("inpaint-random", SHAPE, sigma_y=0.05, generator=torch.Generator().manual_seed(0))
    x = mixture.sample(4, torch.Generator().manual_seed(1)).float().reshape(4, *SHAPE)
    y = task.simulate(x, generator=sample_generators(2, 4))
    runs = [solve("dps", p, task, y, steps=25, step_size=0.01, generator=sample_generators(3, 4)) for p in (native, prior)]
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=1e-4)
    assert float((runs[0] - x).abs().mean()) < 0.5  # (a real restoration, not two equal failures)


@pytest.mark.parametrize("kind", ["eps", "ve", "edm", "flow"])
def test_sampling_the_wrapped_exact_posterior_reaches_its_mean(kind, mixture):
    task = make_task("inpaint-random", SHAPE, sigma_y=0.05, generator=torch.Generator().manual_seed(0))
    x = mixture.sample(1, torch.Generator().manual_seed(1)).float().reshape(1, *SHAPE)
    y = task.simulate(x, generator=sample_generators(2, 1))
    posterior = mixture.condition(task.operator.matrix(), 0.05).at(y.reshape(-1).double())
    native = GMMPrior(posterior, Schedule.linear(), SHAPE, "posterior")
    prior = from_denoiser(written_as(kind, posterior, native), kind, SHAPE, sigma_data=SIGMA_DATA)
    n = 512
    samples = sample_prior(prior, n, steps=100, generator=sample_generators(4, n)).reshape(n, -1).double()
    error = (samples.mean(0) - posterior.mean()).pow(2).mean().sqrt()
    floor = math.sqrt(float(posterior.variance().mean()) / n)  # RMS Monte-Carlo error of a mean of n exact samples
    assert error < 3 * floor, (float(error), floor)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown denoiser kind 'v'"):
        from_denoiser(lambda x, s: x, "v", SHAPE)
