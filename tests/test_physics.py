"""The measurement as the samplers see it: capabilities, whitening, decoders, clamping."""

import pytest
import torch

from dmap.operators import PoissonNoise, make_task
from dmap.operators.physics import Physics
from dmap.rng import seeded

SHAPE = (1, 16, 16)


@pytest.mark.parametrize(
    ("task", "linear", "svd"), [("sr4", True, True), ("deblur-gauss", True, False), ("phase-retrieval", False, False)]
)
def test_capabilities_follow_the_operator(task, linear, svd):
    t = make_task(task, SHAPE, sigma_y=0.05, generator=seeded(0))
    y = t.simulate(torch.zeros(3, *SHAPE), generator=seeded(1))
    physics, y_w = Physics.of(t, y)
    assert (physics.linear, physics.svd, physics.gaussian) == (linear, svd, True)
    assert torch.equal(y_w, y) and torch.equal(physics.sigma_y, torch.full((3,), 0.05))
    if not svd:
        with pytest.raises(TypeError, match="has no SVD"):
            physics.singular_values()


def test_poisson_noise_is_whitened_and_not_gaussian():
    t = make_task("sr4", SHAPE, noise=PoissonNoise(20.0), generator=seeded(0))
    y = t.simulate(torch.rand(2, *SHAPE) * 2 - 1, generator=seeded(1))
    physics, y_w = Physics.of(t, y)
    assert not physics.gaussian and not torch.equal(y_w, y)
    x = torch.rand(2, *SHAPE)
    noise = t.noise.whiten(t.operator, y)[0]
    torch.testing.assert_close(physics.A(x), noise.A(x))


def test_a_decoder_is_folded_in_clipped_in_pixels_and_takes_away_linearity():
    t = make_task("sr4", SHAPE, generator=seeded(0))
    decode = lambda z: 3 * z  # noqa: E731  (an image range the clamp must cut)
    physics = Physics(t.operator, torch.zeros(1), decoder=decode)
    z = torch.linspace(-1, 1, 256).reshape(1, *SHAPE)
    torch.testing.assert_close(physics.A(z), t.operator.A((3 * z).clamp(-1, 1)))
    torch.testing.assert_close(physics.measure(z, clamp=False), t.operator.A(3 * z))
    torch.testing.assert_close(physics.image(z), (3 * z).clamp(-1, 1))
    assert not physics.linear and not physics.svd
    with pytest.raises(TypeError, match="no adjoint .* seen through a decoder"):
        physics.AT(torch.zeros(1, *t.operator.y_shape))


def test_pixel_measure_clamps_only_when_asked():
    t = make_task("sr4", SHAPE, generator=seeded(0))
    physics = Physics(t.operator)
    x = torch.full((1, *SHAPE), 2.0)
    torch.testing.assert_close(physics.measure(x), t.operator.A(x.clamp(-1, 1)))
    torch.testing.assert_close(physics.measure(x, clamp=False), t.operator.A(x))
