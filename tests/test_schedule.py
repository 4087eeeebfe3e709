import math

import pytest
import torch

from dmap.schedule import Schedule, step_pairs


def test_linear_golden_values():
    s = Schedule.linear()
    ab = s.alpha_bar
    assert s.T == 1000 and ab.dtype == torch.float64
    assert float(s.betas[0]) == pytest.approx(1e-4, abs=1e-15)
    assert float(s.betas[-1]) == pytest.approx(0.02, abs=1e-15)
    assert float(ab[0]) == pytest.approx(0.9999, abs=1e-15)
    assert float(ab[499]) == pytest.approx(0.07858724288177824, rel=1e-12)
    assert float(ab[999]) == pytest.approx(4.0358297653756754e-05, rel=1e-12)
    # the closed form: prod (1 - beta_s)
    assert float(ab[9]) == pytest.approx(math.prod(1 - float(b) for b in s.betas[:10]), rel=1e-14)


def test_cosine_golden_values():
    ab = Schedule.cosine().alpha_bar
    assert float(ab[0]) == pytest.approx(0.999958715775178, rel=1e-12)
    assert float(ab[499]) == pytest.approx(0.4938435904406382, rel=1e-12)
    assert torch.all(ab[1:] < ab[:-1])


def test_respacing():
    s = Schedule.linear()
    assert s.timesteps(1000) == list(range(999, -1, -1))
    assert s.timesteps(4) == [999, 666, 333, 0]
    assert step_pairs(s.timesteps(3)) == [(999, 500), (500, 0), (0, -1)]
    with pytest.raises(ValueError):
        s.timesteps(0)
    ab = s.ab(torch.tensor([-1, 0, 999]), torch.zeros(3, 1))
    assert ab.shape == (3, 1) and float(ab[0]) == 1.0


def test_conversions_round_trip():
    s = Schedule.linear()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    xt = s.q_sample(x0, t, eps)
    torch.testing.assert_close(s.eps_to_x0(xt, eps, t), x0)
    torch.testing.assert_close(s.x0_to_eps(xt, x0, t), eps)
    torch.testing.assert_close(s.score_to_eps(s.eps_to_score(eps, t), t), eps)
    ab = s.alpha_bar[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(s.eps_to_score(eps, t), -eps / (1 - ab).sqrt())


@pytest.mark.parametrize("t, t_prev", [(999, 749), (500, 499), (10, 0), (0, -1)])
def test_ancestral_step_matches_ddpm_closed_form(t, t_prev):
    s = Schedule.linear()
    g = torch.Generator().manual_seed(1)
    xt = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    x0 = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    mu, sigma = s.reverse_mean_std(xt, x0, t, t_prev, eta=1.0)
    ab_t = float(s.alpha_bar[t])
    ab_prev = 1.0 if t_prev < 0 else float(s.alpha_bar[t_prev])
    beta = 1 - ab_t / ab_prev
    c0 = math.sqrt(ab_prev) * beta / (1 - ab_t)
    c1 = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)
    torch.testing.assert_close(mu, c0 * x0 + c1 * xt, rtol=1e-12, atol=1e-12)
    assert float(sigma.flatten()[0]) == pytest.approx(math.sqrt(beta * (1 - ab_prev) / (1 - ab_t)), abs=1e-14)


def test_ddim_eta_zero_follows_the_implied_noise():
    s = Schedule.linear()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    xt = s.q_sample(x0, 700, eps)
    mu, sigma = s.reverse_mean_std(xt, x0, 700, 300, eta=0.0)
    assert float(sigma.max()) == 0.0
    torch.testing.assert_close(mu, s.q_sample(x0, 300, eps))


def test_q_sample_statistics():
    s = Schedule.linear()
    g = torch.Generator().manual_seed(3)
    x0 = torch.full((20000, 1), 0.5, dtype=torch.float64)
    xt = s.q_sample(x0, 300, torch.randn(20000, 1, generator=g, dtype=torch.float64))
    ab = float(s.alpha_bar[300])
    assert float(xt.mean()) == pytest.approx(0.5 * math.sqrt(ab), abs=4 * math.sqrt((1 - ab) / 20000))
    assert float(xt.var()) == pytest.approx(1 - ab, rel=0.05)


def test_a_cosine_prior_reloads_with_its_schedule(tmp_path):
    """Regression: the prior description recorded "linear" whatever was trained."""
    from dmap.data import mnist
    from dmap.priors.unet import load_unet_prior
    from dmap.train import MNIST_ARCHITECTURE, train_prior

    data = mnist("train")[0][:8]
    arch = MNIST_ARCHITECTURE.replace(channels=8, groups=4)
    weights = train_prior(data, tmp_path, name="c", architecture=arch, steps=1, batch_size=4, warmup=1, schedule=Schedule.cosine())
    prior = load_unet_prior(weights)
    assert prior.schedule.config.kind == "cosine"
    assert float(prior.schedule.alpha_bar[499]) == pytest.approx(0.4938435904406382, rel=1e-12)


def test_schedule_config_round_trip_and_refusals():
    from dmap.config import ConfigError
    from dmap.schedule import ScheduleConfig

    for s in (Schedule.linear(T=200, beta_end=0.03), Schedule.cosine(T=50)):
        again = Schedule(ScheduleConfig.from_dict(s.config.to_dict()))
        assert torch.equal(again.alpha_bar, s.alpha_bar)
    with pytest.raises(ConfigError, match="unknown setting.*kind2"):
        ScheduleConfig.from_dict({"kind2": "linear"})
    with pytest.raises(ValueError, match="unknown schedule kind 'sigmoid'"):
        ScheduleConfig.from_dict({"kind": "sigmoid"})


def test_coefficients_are_computed_in_float64_before_the_cast():
    """Regression: near t = 0, sqrt(1 - ab_t) computed after a float32 cast of ab_t has a
    relative error of ~1e-4 (1 - ab_0 = 1e-4); computed in float64 it is exact to float32."""
    s = Schedule.linear()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.zeros(64, dtype=torch.int64)
    xt = s.q_sample(x0, t, eps)
    got = s.x0_to_eps(xt.float(), x0.float(), t).double()
    exact = s.x0_to_eps(xt.float().double(), x0.float().double(), t)
    # what remains is the float32 rounding of x_t and x0, amplified by 1 / sqrt(1 - ab_0) = 100
    assert float((got - exact).abs().max()) < 2e-4
    coef = s.coef(0, torch.zeros(1, dtype=torch.float32), lambda a: (1 - a).sqrt())
    assert float(coef) == float(torch.tensor(1e-4, dtype=torch.float64).sqrt().float())


def test_quadratic_spacing_is_the_diffpir_grid():
    """DiffPIR's code steps through T-1 - floor(sqrt(u)), u evenly spaced in [0, T^2]."""
    s = Schedule.linear()
    ts = s.timesteps(100, "quadratic")
    assert ts[:5] == [999, 899, 857, 825, 798] and ts[-5:] == [20, 15, 10, 5, 0] and len(set(ts)) == 100
    assert step_pairs(s.timesteps(3, "quadratic")) == [(999, 292), (292, 0), (0, -1)]
    with pytest.raises(ValueError, match="quadratic spacing needs steps <= 500"):
        s.timesteps(900, "quadratic")
    with pytest.raises(ValueError, match="unknown spacing"):
        s.timesteps(10, "cubic")


def test_karras_spacing_follows_karras_sigmas():
    """Distinct timesteps from T-1 to 0 whose sigmas follow (s_max^(1/7) + i/(N-1)
    (s_min^(1/7) - s_max^(1/7)))^7 where the grid is coarse enough to hold them."""
    s = Schedule.linear()
    ts = s.timesteps(20, "karras")
    assert ts[0] == 999 and ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:]))
    sigma = s.sigmas()
    root = sigma[[999, 0]] ** (1 / 7)
    target = (root[0] + torch.linspace(0, 1, 20, dtype=torch.float64) * (root[1] - root[0])) ** 7
    ratio = sigma[ts[:12]] / target[:12]  # the high-noise part, where neighbouring timesteps are close in sigma
    assert ((ratio - 1).abs() < 0.02).all(), ratio
    with pytest.raises(ValueError, match="karras spacing needs steps <= 250"):
        s.timesteps(300, "karras")
