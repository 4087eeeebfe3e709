import torch

from conftest import random_mixture
from dmap.operators import make_task
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators
from dmap.schedule import Schedule
from dmap.solvers import DMAPOptions, DPSOptions
from dmap.tune import r3, tune

GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # declared on DPSOptions / DMAPOptions.step_size
K_CHOICES = (1, 2, 3, 5)
REFINE = (0.58, 1.73)


def test_search_space_is_the_declared_one():
    import dataclasses

    meta = {f.name: f.metadata for f in dataclasses.fields(DMAPOptions)}
    assert meta["step_size"]["grid"] == GRID and meta["step_size"]["refine"] == REFINE
    assert meta["inner_steps"]["choices"] == K_CHOICES
    assert DPSOptions.strength() == "step_size"


def setup():
    m = random_mixture(d=16, K=2, r=4, seed=0, scale=0.5)
    prior = GMMPrior(m, Schedule.linear(), (1, 4, 4), "tiny")
    task = make_task("inpaint-random", (1, 4, 4), generator=torch.Generator().manual_seed(0))
    x = m.sample(4, torch.Generator().manual_seed(1)).float().reshape(4, 1, 4, 4)
    return prior, task, x, task.simulate(x, generator=sample_generators(2, 4))


def test_full_search_picks_the_best_trial_at_the_budget():
    prior, task, x, y = setup()
    best, trials = tune(prior, task, "dmap", x, y, nfe=20)
    coarse = list(GRID)
    values = [t["step_size"] for t in trials]
    assert values[: len(coarse)] == coarse
    # the grid is widened (x3 past its edge, at most twice) while the best lies at an edge
    wide = len(trials) - (len(coarse) + len(K_CHOICES) - 1 + len(REFINE))
    assert 0 <= wide <= 2
    first = max(trials[: len(coarse)], key=lambda t: t["psnr"])["step_size"]
    assert (first in (min(coarse), max(coarse))) == (wide > 0)
    if wide:
        assert values[len(coarse)] == (3 * first if first == max(coarse) else r3(first / 3))
    assert all(t["nfe"] <= 20 for t in trials)
    top = max(trials, key=lambda t: t["psnr"])
    assert (best.steps, best.step_size, best.inner_steps) == (top["steps"], top["step_size"], top["inner_steps"])


def test_local_search_extends_at_the_edge():
    prior, task, x, y = setup()
    best, trials = tune(prior, task, "dps", x, y, nfe=10, around=DPSOptions(step_size=1e-3, steps=10))
    values = [t["step_size"] for t in trials]
    assert values[:3] == [3.33e-4, 1e-3, 3e-3]
    psnrs = [t["psnr"] for t in trials]
    # far too small a step size: PSNR grows with it, the best lies at the top edge and the grid grows twice
    assert psnrs[2] > psnrs[1] > psnrs[0]
    assert values[3:] == [9e-3, 0.027]
    assert best.step_size == max(trials, key=lambda t: t["psnr"])["step_size"]
