import math

import pytest
import torch

from dmap.priors.gmm import GaussianMixture


def random_mixture(d: int, K: int, r: int, seed: int, scale: float = 1.0) -> GaussianMixture:
    """A small mixture with random means, random orthonormal principal directions and a
    residual variance (``r < d``) or a full covariance (``r = d``)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(K, d, generator=g, dtype=torch.float64) * 0.6 * scale
    q, _ = torch.linalg.qr(torch.randn(K, d, d, generator=g, dtype=torch.float64))
    lam = (0.02 + 0.3 * torch.rand(K, r, generator=g, dtype=torch.float64)) * scale**2
    residual = (0.01 + 0.02 * torch.rand(K, generator=g, dtype=torch.float64)) * scale**2
    logw = torch.log(0.5 + torch.rand(K, generator=g, dtype=torch.float64))
    return GaussianMixture(logw, means, q[:, :, :r], lam, residual)


@pytest.fixture(scope="session")
def gmm_prior():
    from dmap import load_prior

    return load_prior("gmm-mnist")


def dense_log_normal(x, mean, cov):
    d = x.shape[-1]
    diff = x - mean
    sol = torch.linalg.solve(cov, diff.T).T
    return -0.5 * ((diff * sol).sum(-1) + torch.logdet(cov) + d * math.log(2 * math.pi))


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of several seconds; run with --all")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all"):
        return
    skip = pytest.mark.skip(reason="slow: run with --all")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
