"""Posterior-fidelity measures on cases with a known answer."""

import math

import pytest
import torch

from conftest import random_mixture
from dmap.analysis.fidelity import component_weights, coverage, directions, energy_distance, fidelity, sliced_w2


@pytest.fixture(scope="module")
def posterior():
    return random_mixture(d=12, K=3, r=12, seed=5, scale=0.6)


def draw(mixture, n, seed):
    return mixture.sample(n, torch.Generator().manual_seed(seed))


def test_two_exact_sets_sit_at_the_floor_and_cover_nominally(posterior):
    exact, again, third = draw(posterior, 2000, 0), draw(posterior, 400, 1), draw(posterior, 400, 2)
    out = fidelity(third, exact, again, posterior, generator=torch.Generator().manual_seed(3))
    assert out["sw2"] < 1.5 * out["sw2_floor"] and out["energy"] < 3 * abs(out["energy_floor"]) + 1e-3
    assert abs(out["variance_ratio"] - 1) < 0.15 and out["weights_tv"] < 0.06
    assert abs(out["coverage_50"] - 0.5) < 0.04 and abs(out["coverage_90"] - 0.9) < 0.03
    floor = math.sqrt(float(posterior.variance().mean()) / 400)
    assert out["mean_error"] < 3 * floor


def test_a_point_mass_has_no_variance_and_covers_nothing(posterior):
    exact, again = draw(posterior, 1000, 0), draw(posterior, 200, 1)
    point = posterior.mean().expand(200, -1).clone()
    out = fidelity(point, exact, again, posterior)
    assert out["variance_ratio"] == 0 and out["coverage_90"] < 0.05
    assert out["mean_error"] < 1e-12 and out["sw2"] > 3 * out["sw2_floor"]


def test_a_shrunken_posterior_is_seen_by_every_measure(posterior):
    exact, again = draw(posterior, 2000, 0), draw(posterior, 400, 1)
    mean = posterior.mean()
    shrunk = mean + 0.5 * (draw(posterior, 400, 2) - mean)  # a quarter of the variance, as DPS keeps
    out = fidelity(shrunk, exact, again, posterior)
    assert abs(out["variance_ratio"] - 0.25) < 0.05
    assert out["sw2"] > 2 * out["sw2_floor"] and out["coverage_90"] < 0.75
    assert out["energy"] > 5 * abs(out["energy_floor"])


def test_sliced_w2_of_a_shift_is_the_shift_along_the_directions():
    """Between a set and itself shifted by v, every projection is shifted by u^T v: SW2 =
    sqrt(mean_u (u^T v)^2), whatever the set."""
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.tensor([0.3, -0.2, 0.0, 0.5, 0.1], dtype=torch.float64)
    dirs = directions(5, 64, torch.Generator().manual_seed(1))
    assert sliced_w2(x, x + v, dirs) == pytest.approx(float((v @ dirs).pow(2).mean().sqrt()), rel=1e-9)
    assert sliced_w2(x, x, dirs) == 0


def test_energy_distance_and_coverage_by_hand():
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    z = torch.tensor([[0.0], [3.0]], dtype=torch.float64)
    # 2 E|X-Z| = 2 (0 + 3 + 1 + 2) / 4 = 3; E|X-X'| = 1; E|Z-Z'| = 3
    assert energy_distance(x, z) == pytest.approx(-1.0)
    samples = torch.linspace(0, 1, 101, dtype=torch.float64).reshape(-1, 1)
    points = torch.tensor([[0.2], [0.5], [0.8], [0.96]], dtype=torch.float64)
    assert coverage(samples, points, 0.5) == 0.25 and coverage(samples, points, 0.9) == 0.75


def test_component_weights_of_exact_samples_are_the_weights(posterior):
    w = component_weights(draw(posterior, 4000, 7), posterior)
    torch.testing.assert_close(w, posterior.log_weights.exp(), atol=0.03, rtol=0)


FIDELITY = ["fidelity", "--task", "sr4", "--methods", "dps,dmap", "--samples", "8", "--measurements", "2", "--nfe", "6,12"]


def test_the_fidelity_command_writes_json_rows_and_resumes(tmp_path, capsys, monkeypatch):
    import json

    import dmap.analysis.fidelity_run as run
    from dmap.cli import main

    out = tmp_path / "f"
    assert main(FIDELITY + ["--out", str(out), "--json"]) == 0
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["method"], c["nfe"]) for c in cells] == [(m, n) for m in ("exact", "dps", "dmap") for n in (6, 12)]
    for key in ("sw2", "sw2_floor", "energy", "mean_error", "variance_ratio", "coverage_50", "coverage_90", "seconds"):
        assert all(isinstance(c[key], float) for c in cells), key
    exact = cells[0]
    assert exact["sw2_ratio"] < 1.5 and abs(exact["variance_ratio"] - 1) < 0.5
    for name in ("summary.md", "sw2_ratio_vs_nfe.png", "variance_ratio_vs_nfe.png", "std_maps.png"):
        assert (out / name).exists(), name
    calls = []
    monkeypatch.setattr(run, "run_method", lambda *a, **k: calls.append(a))
    assert main(FIDELITY + ["--out", str(out), "--json"]) == 0 and calls == []  # resumed: nothing left to solve
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == cells


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--prior", "mnist"], "no closed-form posterior"),
        (["--task", "phase-retrieval"], "needs a linear task"),
        (["--methods", "nope"], "unknown method"),
        (["--sigma-y", "0"], "--sigma-y"),
        (["--samples", "1"], "--samples must be >= 2"),
    ],
)
def test_the_fidelity_command_refuses_what_has_no_exact_posterior(change, message, tmp_path, capsys):
    from dmap.cli import main

    argv = list(FIDELITY)
    for i in range(0, len(change), 2):
        if change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i : i + 2]
    assert main(argv + ["--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "f").exists()


def test_the_posterior_summary_of_gaussian_samples():
    from dmap.analysis.fidelity import posterior_summary

    x = torch.randn(20000, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.1
    s = posterior_summary(x, 0.9)
    torch.testing.assert_close(s["mean"], torch.full((1, 2, 2), 0.1), atol=0.01, rtol=0)
    torch.testing.assert_close(s["std"], torch.full((1, 2, 2), 0.5), atol=0.01, rtol=0)
    torch.testing.assert_close(s["upper"], torch.full((1, 2, 2), 0.1 + 1.645 * 0.5), atol=0.02, rtol=0)
    torch.testing.assert_close(s["lower"], torch.full((1, 2, 2), 0.1 - 1.645 * 0.5), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        posterior_summary(x[:1])
