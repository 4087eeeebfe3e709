"""One setting at every budget: the step size means the same at 50 and at 1000 steps."""

import math

import pytest
import torch

from conftest import random_mixture
from dmap import run_method
from dmap.operators import make_task
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators
from dmap.schedule import Schedule, step_pairs
from dmap.solvers import METHODS
from dmap.solvers.sample import sample_prior
from dmap.tune import tune

SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def gaussian():
    """A one-component Gaussian prior (exact posterior), an inpainting task at sigma_y 0.05,
    8 training draws with their measurements, and one test measurement."""
    m = random_mixture(d=16, K=1, r=4, seed=3, scale=0.5)
    prior = GMMPrior(m, Schedule.linear(), SHAPE, "gaussian")
    task = make_task("inpaint-random", SHAPE, sigma_y=0.05, generator=torch.Generator().manual_seed(0))
    x = m.sample(9, torch.Generator().manual_seed(1)).reshape(9, *SHAPE)
    y = task.simulate(x, generator=sample_generators(2, 9))
    return m, prior, task, x[:8], y[:8], y[8:]


@pytest.mark.parametrize("method", ["dps", "dsg", "dmap"])
def test_a_setting_tuned_at_250_holds_at_50_and_1000_evaluations(method, gaussian):
    """Tuned on training draws at 250 evaluations, the same options at 50 and at 1000
    evaluations give finite restorations whose mean (64 samples) lies measurably closer to
    the exact posterior mean than unconditional samples do."""
    m, prior, task, x_train, y_train, y = gaussian
    chosen, _ = tune(prior, task, method, x_train, y_train, nfe=250)
    post_mean = m.condition(task.operator.matrix(), 0.05).mean(y.reshape(1, -1).double())[0]
    n = 64
    for nfe in (50, 1000):
        opts = chosen.for_budget(nfe)
        out = run_method(method, prior, task, y.expand(n, *y.shape[1:]), opts, generator=sample_generators(4, n))
        assert torch.isfinite(out).all()
        free = sample_prior(prior, n, steps=opts.steps, generator=sample_generators(4, n))
        dist = float((out.reshape(n, -1).mean(0) - post_mean).norm())
        dist_free = float((free.reshape(n, -1).mean(0) - post_mean).norm())
        assert dist < 0.75 * dist_free, (nfe, dist, dist_free)


def test_time_guidance_is_the_dps_constant_at_the_full_schedule_and_scales_with_the_jump():
    schedule = Schedule.linear()
    opts = METHODS["dps"].options(step_size=0.5)
    assert opts.guidance == "time"
    assert [opts.zeta(t, t - 1) for t in (999, 500, 0)] == [0.5, 0.5, 0.5]
    assert opts.zeta(999, 979) == pytest.approx(10.0)
    assert opts.replace(guidance="constant").zeta(999, 979) == 0.5
    # the step sizes of a run add up to zeta * T whatever the number of steps
    for steps, spacing in ((50, "uniform"), (250, "quadratic"), (1000, "uniform")):
        total = sum(opts.zeta(t, tp) for t, tp in step_pairs(schedule.timesteps(steps, spacing)))
        assert math.isclose(total, 0.5 * schedule.T)


def test_preset_files_from_before_the_time_parametrization_read_as_per_step(tmp_path):
    """A preset file without a format (dmap < 0.3) holds per-step step sizes: its entries
    resolve to guidance="constant"; a file written now says format 3 and keeps "time"."""
    import json

    from dmap.presets import load_presets, resolve_options, write_preset

    old = tmp_path / "old.json"
    old.write_text(
        json.dumps({"notes": {}, "presets": {"mnist": {"sr4": {"dps": {"step_size": 0.64, "steps": 1000}, "ddrm": {"eta": 0.5}}}}})
    )
    opts = resolve_options("dps", "mnist", "sr4", presets=load_presets(old))
    assert (opts.step_size, opts.guidance) == (0.64, "constant")
    assert resolve_options("ddrm", "mnist", "sr4", presets=load_presets(old)).eta == 0.5
    new = tmp_path / "new.json"
    write_preset(new, "mnist", "sr4", "dps", METHODS["dps"].options(step_size=0.2), "test")
    assert json.loads(new.read_text())["format"] == 3
    assert resolve_options("dps", "mnist", "sr4", presets=load_presets(new)).guidance == "time"
    # the shipped presets are in the current format
    assert resolve_options("dps", "mnist", "sr4").guidance == "time"
