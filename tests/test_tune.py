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


def test_several_budgets_score_one_setting_by_its_mean_psnr():
    prior, task, x, y = setup()
    best, trials = tune(prior, task, "dps", x, y, nfe=(10, 20), around=DPSOptions(step_size=1e-3))
    for t in trials:
        assert t["nfe"] == [10, 20] and len(t["psnr_per_budget"]) == 2
        assert t["psnr"] == sum(t["psnr_per_budget"]) / 2
    top = max(trials, key=lambda t: t["psnr"])
    assert (best.steps, best.step_size) == (20, top["step_size"])
    # a budget alone scores what that budget scored within the pair
    _, alone = tune(prior, task, "dps", x, y, nfe=10, around=DPSOptions(step_size=1e-3))
    assert [t["psnr"] for t in alone[:3]] == [t["psnr_per_budget"][0] for t in trials[:3]]


def test_a_table_of_strengths_by_steps_comes_from_the_same_trials_at_every_budget():
    from dmap.tune import budget_table, tune_budgets

    prior, task, x, y = setup()
    best, trials, by_steps = tune_budgets(prior, task, "dmap", x, y, nfe=(10, 20), fixed={"inner_steps": 2})
    assert sorted(by_steps) == [4, 7] and best.steps == 7 and best.inner_steps == 2
    # K fixed: every trial keeps it, and every trial ran at both budgets
    assert all(t["inner_steps"] == 2 and t["nfe"] == [10, 19] and len(t["psnr_per_image"][1]) == 4 for t in trials)
    assert len(trials) == len(GRID) + len(REFINE) + sum(t["step_size"] not in GRID for t in trials[len(GRID) : -len(REFINE)])
    assert by_steps == budget_table(trials, "step_size", [4, 7])


def test_a_check_on_other_images_caps_a_budget_that_falls_there():
    from dmap.presets import at_steps
    from dmap.tune import check_budgets, evaluate

    prior, task, x, y = setup()
    table = {"20": 0.1, "40": 1e4}  # as read from a preset file; the larger budget far too strong
    checked, scores = check_budgets(prior, task, "dps", x, y, DPSOptions(step_size=1e4, steps=40), table, (20, 40))
    # each budget ran as a run of that budget does: budget 20 is DPS at 20 steps, step 0.1
    assert scores[0] == evaluate(prior, task, "dps", x, y, 0, DPSOptions(step_size=0.1, steps=20))
    assert sum(scores[1]) / 4 < sum(scores[0]) / 4 - 1.0
    assert checked == {20: 0.1, 40: [0.1, 20]}
    assert at_steps(checked, 40) == (20, 0.1)  # a run of 40 steps now runs 20
    # a table whose larger budget scores higher is kept as it is
    kept, scores = check_budgets(prior, task, "dps", x, y, DPSOptions(step_size=0.1, steps=40), {20: 0.1, 40: 0.1}, (20, 40))
    assert sum(scores[1]) > sum(scores[0]) and kept == {20: 0.1, 40: 0.1}


def test_the_check_caps_a_fall_of_the_validation_mean_from_stored_scores():
    from dmap.tune import capped, check_runs, paired_se

    options, table = DPSOptions(step_size=0.3, steps=40), {"20": 0.1, "40": 0.3}
    runs = check_runs(options, table, (20, 40))
    assert [(o.steps, o.step_size) for o in runs] == [(20, 0.1), (40, 0.3)]
    at_20, at_40 = [20.0, 21.0, 22.0, 23.0], [20.3, 20.7, 22.3, 22.5]  # 0.05 dB lower at 40, SE 0.17
    assert 0 < sum(at_20) / 4 - sum(at_40) / 4 < paired_se(at_40, at_20)
    assert capped(options, table, (20, 40), [at_20, at_40]) == {20: 0.1, 40: [0.1, 20]}  # any fall: capped
    assert capped(options, table, (20, 40), [at_20, at_40], allowance=1.0) == {20: 0.1, 40: 0.3}  # within SE
    assert capped(options, table, (20, 40), [at_20, [v + 0.01 for v in at_20]]) == {20: 0.1, 40: 0.3}  # no fall
    fallen = [v - 0.5 for v in at_20]  # 0.5 dB lower, paired SE 0
    assert capped(options, table, (20, 40), [at_20, fallen]) == {20: 0.1, 40: [0.1, 20]}
