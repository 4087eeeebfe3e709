import torch

from conftest import random_mixture
from dmap.operators import make_task
from dmap.priors.gmm import GMMPrior
from dmap.rng import sample_generators
from dmap.schedule import Schedule
from dmap.tune import DMAP_INNER_STEPS, SEARCH, r3, tune


def setup():
    m = random_mixture(d=16, K=2, r=4, seed=0, scale=0.5)
    prior = GMMPrior(m, Schedule.linear(), (1, 4, 4), "tiny")
    task = make_task("inpaint-random", (1, 4, 4), generator=torch.Generator().manual_seed(0))
    x = m.sample(4, torch.Generator().manual_seed(1)).float().reshape(4, 1, 4, 4)
    return prior, task, x, task.simulate(x, generator=sample_generators(2, 4))


def test_full_search_picks_the_best_trial_at_the_budget():
    prior, task, x, y = setup()
    best, trials = tune(prior, task, "dmap", x, y, nfe=20)
    coarse = SEARCH["dmap"][1]
    values = [t["step_size"] for t in trials]
    assert values[: len(coarse)] == coarse
    # the grid is widened (x3 past its edge, at most twice) while the best lies at an edge
    wide = len(trials) - (len(coarse) + len(DMAP_INNER_STEPS) - 1 + len(SEARCH["dmap"][2]))
    assert 0 <= wide <= 2
    first = max(trials[: len(coarse)], key=lambda t: t["psnr"])["step_size"]
    assert (first in (min(coarse), max(coarse))) == (wide > 0)
    if wide:
        assert values[len(coarse)] == (3 * first if first == max(coarse) else r3(first / 3))
    assert all(t["nfe"] <= 20 for t in trials)
    top = max(trials, key=lambda t: t["psnr"])
    assert best == {"steps": top["steps"], "step_size": top["step_size"], "inner_steps": top["inner_steps"]}


def test_local_search_extends_at_the_edge():
    prior, task, x, y = setup()
    best, trials = tune(prior, task, "dps", x, y, nfe=10, around={"step_size": 1e-3, "steps": 10})
    values = [t["step_size"] for t in trials]
    assert values[:3] == [3.33e-4, 1e-3, 3e-3]
    psnrs = [t["psnr"] for t in trials]
    # far too small a step size: PSNR grows with it, the best lies at the top edge and the grid grows twice
    assert psnrs[2] > psnrs[1] > psnrs[0]
    assert values[3:] == [9e-3, 0.027]
    assert best["step_size"] == max(trials, key=lambda t: t["psnr"])["step_size"]
