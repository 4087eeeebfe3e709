import math

import pytest
import torch

from conftest import random_mixture
from dmap.analysis import diversity, dps_score, exact_posterior_xt, mean_test, score_error
from dmap.operators.base import LinearOperator
from dmap.priors.gmm import GMMPrior
from dmap.schedule import Schedule


class Matrix(LinearOperator):
    def __init__(self, M):
        super().__init__((1, 2, 4), (M.shape[0],))
        self.register_buffer("M", M)

    def A(self, x):
        return x.reshape(x.shape[0], -1) @ self.M.T.to(x)


def problem(seed=0):
    m = random_mixture(d=8, K=3, r=3, seed=seed, scale=0.3)
    g = torch.Generator().manual_seed(seed + 1)
    A = torch.randn(4, 8, dtype=torch.float64, generator=g)
    x0 = m.sample(1, generator=g)
    y = A @ x0[0] + 0.1 * torch.randn(4, generator=g, dtype=torch.float64)
    return m, A, y, x0, m.condition(A, 0.1).at(y)


@pytest.mark.parametrize("t", [49, 499, 949])
def test_exact_conditional_score_has_zero_mean_and_a_bias_is_flagged(t):
    m, A, y, _, post = problem()
    s = Schedule.linear()
    xt = exact_posterior_xt(post, s, t, 20000, torch.Generator().manual_seed(2))
    exact = post.score(xt, s.ab(t, xt))
    assert mean_test(exact)["z"] < 3
    biased = exact + 0.1 * exact.std(0).mean()
    assert mean_test(biased)["z"] > 10
    # the prior's score ignores y: at low noise, where y matters, its mean under p_t(x_t | y) is far from zero
    if t < 100:
        assert mean_test(m.score(xt, s.ab(t, xt)))["z"] > 10


def test_score_error_and_dps_implied_score():
    m, A, y, _, post = problem(3)
    s = Schedule.linear()
    prior = GMMPrior(m, s, (1, 2, 4), "tiny")
    op = Matrix(A)
    t, t_prev = 300, 299
    xt = exact_posterior_xt(post, s, t, 500, torch.Generator().manual_seed(4))
    ref = post.score(xt, s.ab(t, xt))
    assert score_error(ref, ref).abs().max() == 0
    # zeta = 0: DPS's implied score is the unconditional one
    x4 = xt.reshape(-1, 1, 2, 4)
    yy = y.expand(len(xt), -1)
    zero = dps_score(prior, op, yy, x4, t, t_prev, 0.0, clamp=False).reshape(len(xt), -1)
    torch.testing.assert_close(zero, m.score(xt, s.ab(t, xt)))
    # the factor sqrt(alpha') / beta' of the implied score
    alpha = float(s.alpha_bar[t] / s.alpha_bar[t_prev])
    assert s.score_step_factor(t, t_prev) == pytest.approx(math.sqrt(alpha) / (1 - alpha))
    some = dps_score(prior, op, yy, x4, t, t_prev, 1e-3, clamp=False).reshape(len(xt), -1)
    assert not torch.equal(some, zero)


@pytest.mark.slow
def test_diversity_of_exact_samples_matches_posterior_variance():
    _, _, _, x0, post = problem(5)
    x = post.sample(4000, torch.Generator().manual_seed(6)).reshape(-1, 1, 2, 4)
    out = diversity(x, truth=x0.reshape(1, 1, 2, 4), posterior_mean=post.mean())
    assert out["pixel_std"] == pytest.approx(float(post.variance().sqrt().mean()), rel=0.03)
    few = x[:50].reshape(50, -1)
    dist = torch.cdist(few, few) / math.sqrt(8)
    assert diversity(x[:50])["pairwise_rms"] == pytest.approx(float(dist.sum() / (50 * 49)))
    # Jensen: (E ||a - b|| / sqrt(d))^2 <= E ||a - b||^2 / d = 2 tr(Cov) / d for independent samples
    assert 0.7 * 2 * float(post.variance().mean()) < out["pairwise_rms"] ** 2 < 2 * float(post.variance().mean())
    assert out["mean_to_posterior_mean_rms"] < 3 * math.sqrt(float(post.variance().mean()) / 4000)
    assert len(out["psnr_samples"]) == 4000
    again = diversity(post.sample(4000, torch.Generator().manual_seed(6)).reshape(-1, 1, 2, 4))
    assert again["pixel_std"] == out["pixel_std"]


@pytest.mark.slow
def test_analyze_cli_writes_figures_and_json(tmp_path, capsys):
    import json

    from dmap.cli import main

    argv = ["analyze", "--task", "sr4", "--pairs", "2", "--samples", "2", "--nfe", "30", "--mean-samples", "16"]
    assert main(argv + ["--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {p.name for p in tmp_path.iterdir()} == {
        "analysis.json",
        "score_error.png",
        "score_mean.png",
        "diversity.png",
        "samples.png",
    }
    assert result == json.loads((tmp_path / "analysis.json").read_text())
    assert len(result["score_error"]["dps"]) == len(result["timesteps"]) == 20
    assert set(result["diversity"]) == {"exact posterior", "dps", "dsg", "dmap"}
    # DPS's implied conditional score is far from the exact one at low noise, the prior's much closer
    assert result["score_error"]["dps"][0]["mean"] > 10 * result["score_error"]["unconditional"][0]["mean"]
    # deterministic for a seed
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "analysis.json").read_text()) == result


def test_network_reference_scores_and_samples():
    """With an untrained estimator (equal to the prior, bit for bit) as both the estimator
    and the reference, the unconditional and CSE score errors are exactly zero, DPS's is not."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from dmap.analysis.run import NetworkReference, analyze
    from dmap.cse import CSE, AdapterMeta, adapter_for
    from dmap.data import mnist_spread
    from dmap.operators import make_task
    from dmap.rng import seeded
    from test_cse import tiny_prior

    prior = tiny_prior()
    cse = CSE(prior, adapter_for(prior), AdapterMeta("sr4", "tiny", prior.fingerprint(), 0.05))
    task = make_task("sr4", prior.shape)
    x, _ = mnist_spread(3)
    y = task.simulate(x, generator=seeded(1))
    ref = NetworkReference(cse, task, y, steps=5)
    result, samples = analyze(prior, task, x, y, methods=("cse",), n_mean=8, n_samples=3, nfe=5, cse=cse, reference=ref)
    assert result["reference"] == "reference cse" and not result["exact_reference"]
    assert all(e["mean"] == 0 for name in ("unconditional", "cse") for e in result["score_error"][name])
    assert all(e["mean"] > 0 for e in result["score_error"]["dps"])
    assert set(result["score_mean"]) == {"reference", "unconditional", "dps", "cse"}
    assert set(samples) == {"reference cse", "cse"} and samples["cse"].shape == (3, 1, 32, 32)


def test_dps_implied_score_reproduces_the_dps_step():
    """The implied score s - zeta sqrt(alpha') / beta' g, put into the ancestral mean
    (x_t + beta' s) / sqrt(alpha'), gives DPS's update mu(x_t, x0_hat) - zeta g: a wrong
    sign or factor in dps_score fails here."""
    from dmap.operators.physics import Physics
    from dmap.solvers.common import measurement_grad

    m, A, y, _, post = problem(3)
    s = Schedule.linear()
    prior = GMMPrior(m, s, (1, 2, 4), "tiny")
    op = Matrix(A)
    t, t_prev, zeta = 400, 350, 0.7
    x = exact_posterior_xt(post, s, t, 6, torch.Generator().manual_seed(4)).reshape(-1, 1, 2, 4)
    yy = y.expand(len(x), -1)
    implied = dps_score(prior, op, yy, x, t, t_prev, zeta, clamp=False)
    alpha = float(s.alpha_bar[t] / s.alpha_bar[t_prev])
    from_score = (x + (1 - alpha) * implied) / math.sqrt(alpha)
    xg = x.detach().requires_grad_(True)
    x0_hat = prior.x0(xg, t)
    g, _ = measurement_grad(xg, x0_hat, Physics(op), yy, clamp=False)
    mu, _ = s.reverse_mean_std(x, x0_hat.detach(), t, t_prev)
    torch.testing.assert_close(from_score, mu - zeta * g, rtol=1e-9, atol=1e-9)


def test_timesteps_follow_the_schedule_length():
    """Regression: the analysis hard-coded T = 1000 (t = 50 .. 1000)."""
    from dmap.analysis.run import timesteps

    assert timesteps(1000) == list(range(49, 1000, 50))
    assert timesteps(200) == list(range(9, 200, 10))
    assert timesteps(30, 3) == [9, 19, 29]


def test_analyze_runs_on_a_prior_with_another_schedule_length():
    from dmap.analysis.run import analyze
    from dmap.operators import make_task

    m, A, y, x0, _ = problem(2)
    prior = GMMPrior(m, Schedule.linear(T=100), (1, 2, 4), "tiny")
    task = make_task(Matrix(A), sigma_y=0.1)
    result, _ = analyze(
        prior, task, x0.reshape(1, 1, 2, 4).float(), y.reshape(1, -1).float(), methods=("dps",), n_mean=8, n_samples=2, nfe=10
    )
    assert result["timesteps"] == list(range(5, 101, 5)) and result["exact_reference"]
    assert all(math.isfinite(e["mean"]) for e in result["score_error"]["dps"])
