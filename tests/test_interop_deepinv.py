"""deepinv interop; runs where deepinv is installed (its own environment, see
docs/api.md), skipped elsewhere (CI)."""

import pytest
import torch

deepinv = pytest.importorskip("deepinv")

import dmap  # noqa: E402
from dmap.data import mnist  # noqa: E402
from dmap.interop.deepinv import denoiser_from_prior, operator_from_physics, sigma_of  # noqa: E402
from dmap.operators import check_adjoint  # noqa: E402
from dmap.rng import sample_generators, seeded  # noqa: E402


def test_a_physics_becomes_an_operator_with_its_adjoint():
    physics = deepinv.physics.Downsampling(img_size=(1, 32, 32), factor=2, filter="gaussian")
    op = operator_from_physics(physics, (1, 32, 32))
    x = torch.randn(2, 1, 32, 32, generator=seeded(0))
    torch.testing.assert_close(op.A(x), physics.A(x))
    assert check_adjoint(op, (1, 32, 32), generator=seeded(1), dtype=torch.float32) < 1e-4
    task = dmap.make_task(op, sigma_y=0.05)
    prior = dmap.load_prior("mnist")
    y = task.simulate(mnist("test")[0][:2], generator=sample_generators(1, 2))
    out = dmap.solve("dps", prior, task, y, steps=20, step_size=1.0, generator=sample_generators(2, 2))
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()


def test_the_denoiser_reproduces_x0_hat_at_the_schedule_levels():
    prior = dmap.load_prior("mnist")
    den = denoiser_from_prior(prior)
    for t in (50, 300, 800):
        x_t = torch.randn(2, 1, 32, 32, generator=seeded(t))
        ab = float(prior.schedule.alpha_bar[t])
        noisy01 = (x_t / ab**0.5 + 1) / 2  # the same point in deepinv's convention
        with torch.no_grad():
            got = den(noisy01, sigma_of(prior, t))
            want = (prior.x0(x_t, t) + 1) / 2
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
