import pytest
import torch

from dmap import METHODS, load_prior, resolve_options, solve
from dmap.catalogue import find_cse
from dmap.cse import CSE, AdapterMeta, adapter_for, condition, load_cse
from dmap.data import mnist
from dmap.operators import TASKS, make_task
from dmap.priors.network import NetworkPrior
from dmap.priors.unet import UNet
from dmap.rng import sample_generators, seeded
from dmap.schedule import Schedule
from dmap.train import MNIST_ARCHITECTURE, train_cse

TINY = MNIST_ARCHITECTURE.replace(channels=8, groups=4)
LINEAR = [name for name in TASKS if name != "colorize" and make_task(name, (1, 32, 32), generator=seeded(0)).operator.linear]
CSE_METHODS = [m for m in METHODS if METHODS[m].uses_cse]
OPTIONS = {
    "cse": {"steps": 6},
    "dps+cse": {"steps": 6, "step_size": 0.05},
    "dmap+cse": {"steps": 4, "step_size": 0.05, "inner_steps": 2},
}


def fresh_cse(prior: NetworkPrior, task: str = "sr4") -> CSE:
    """An untrained adapter (equal to the prior) for ``task``."""
    return CSE(prior, adapter_for(prior), AdapterMeta(task, prior.name, prior.fingerprint(), 0.05))


def tiny_prior(seed: int = 0, name: str = "tiny") -> NetworkPrior:
    """A small random UNet whose output layer is not zero (so the adapter can act)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = UNet(TINY)
        for p in net.out.parameters():
            torch.nn.init.normal_(p, std=0.05)
    return NetworkPrior(net.eval(), Schedule.linear(), (1, 32, 32), name)


@pytest.fixture(scope="module")
def data():
    return mnist("train")[0][:16]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """An adapter on the shipped prior, trained for 30 steps on 16 digits for sr4."""
    prior = load_prior("mnist")
    path = train_cse(
        prior,
        "sr4",
        data,
        list(range(16)),
        tmp_path_factory.mktemp("cse") / "a.safetensors",
        steps=30,
        batch_size=16,
        lr=1e-3,
        warmup=5,
        ema_decay=0.0,
        checkpoint_every=100,
    )
    return prior, path


def fixed_batch_loss(prior, cse, data, t: int = 600):
    """The epsilon-MSE on ``data`` at timestep ``t`` with fixed noise and measurement."""
    g = seeded(11)
    t = torch.full((len(data),), t)
    noise = torch.randn(data.shape, generator=g)
    task = make_task("sr4", prior.shape, generator=g)
    cond = condition(task.operator, task.simulate(data, g))
    with torch.no_grad():
        return float(((cse.eps(prior.schedule.q_sample(data, t, noise), t, cond) - noise) ** 2).mean())


def test_at_initialization_the_estimator_is_the_prior_exactly():
    prior = tiny_prior()
    cse = fresh_cse(prior)
    task = make_task("inpaint-box", prior.shape, generator=seeded(0))
    x = torch.randn(4, *prior.shape, generator=seeded(1))
    cond = condition(task.operator, task.simulate(x, seeded(2)))
    t = torch.tensor([0, 300, 700, 999])
    with torch.no_grad():
        eps = cse.eps(x, t, cond)
    assert eps.abs().max() > 0.01  # a non-trivial output...
    assert torch.equal(eps, prior.eps(x, t))  # ...equal to the prior's, bit for bit


def test_adapter_is_at_most_half_the_prior():
    net = UNet(MNIST_ARCHITECTURE)
    prior = NetworkPrior(net, Schedule.linear(), (1, 32, 32), "m")
    n_adapter = sum(p.numel() for p in adapter_for(prior).parameters())
    assert n_adapter <= 0.5 * sum(p.numel() for p in net.parameters())


def test_training_lowers_the_loss_and_records_its_images(trained, data):
    prior, path = trained
    cse = load_cse(prior, path, "sr4")
    before = fixed_batch_loss(prior, fresh_cse(prior), data)
    after = fixed_batch_loss(prior, cse, data)
    assert after < 0.9 * before
    assert cse.meta.images["indices"] == list(range(16)) and cse.meta.images["n"] == 16
    assert cse.meta.prior_fingerprint == prior.fingerprint()


def test_resumed_training_equals_uninterrupted(data, tmp_path):
    prior = tiny_prior()
    kw = dict(batch_size=4, warmup=1, checkpoint_every=2)
    a = train_cse(prior, "inpaint-box", data[:4], [0, 1, 2, 3], tmp_path / "a.safetensors", steps=4, **kw)
    train_cse(prior, "inpaint-box", data[:4], [0, 1, 2, 3], tmp_path / "b.safetensors", steps=2, **kw)
    b = train_cse(prior, "inpaint-box", data[:4], [0, 1, 2, 3], tmp_path / "b.safetensors", steps=4, **kw)
    sa, sb = load_cse(prior, a).adapter.state_dict(), load_cse(prior, b).adapter.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", LINEAR)
def test_condition_shape_for_every_linear_task(name):
    task = make_task(name, (1, 32, 32), generator=seeded(0))
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    cond = condition(task.operator, task.simulate(x, seeded(1)))
    assert cond.shape == (3, 2, 32, 32)
    torch.testing.assert_close(cond[:, :1], task.operator.pinv(task.simulate(x, seeded(1))))
    mask = task.operator.mask.float() if name.startswith("inpaint") else torch.ones(32, 32)
    assert torch.equal(cond[:, 1], mask.expand(3, 32, 32))


def test_nonlinear_task_is_refused():
    task = make_task("phase-retrieval", (1, 32, 32))
    with pytest.raises(ValueError, match="linear task"):
        condition(task.operator, task.simulate(torch.zeros(1, 1, 32, 32)))


def test_mismatched_adapter_is_refused(trained):
    prior, path = trained
    with pytest.raises(ValueError, match="trained for task 'sr4', not 'inpaint-box'"):
        load_cse(prior, path, "inpaint-box")
    with pytest.raises(ValueError, match="trained on prior 'mnist'"):
        load_cse(tiny_prior(seed=1, name="mnist"), path)
    cse = load_cse(prior, path)
    task = make_task("inpaint-box", prior.shape, generator=seeded(0))
    with pytest.raises(ValueError, match="trained for task 'sr4'"):
        solve("dps+cse", prior, task, torch.zeros(1, *task.operator.y_shape), cse=cse, steps=2)


def test_no_shipped_estimator_names_what_exists():
    with pytest.raises(ValueError, match="no shipped conditional score estimator for prior 'tiny'"):
        find_cse(tiny_prior(), "sr4")


@pytest.mark.parametrize("task", ["inpaint-box", "sr4"])
def test_the_shipped_estimator_is_chosen_by_noise_level(task):
    """Each paper task ships an adapter at sigma_y = 0.05 (the default) and one at 0 (the
    paper's noiseless measurements); another level names the ones that exist."""
    prior = load_prior("mnist")
    assert find_cse(prior, task).meta.sigma_y == 0.05
    assert find_cse(prior, task, sigma_y=0.0).meta.sigma_y == 0.0
    with pytest.raises(ValueError, match=rf"at sigma_y = 0.1 \(shipped: .*mnist/{task} \(sigma_y 0\)"):
        find_cse(prior, task, sigma_y=0.1)


def test_with_an_untrained_adapter_the_cse_methods_reduce_to_their_bases(data):
    """DPS+CSE and DMAP+CSE with the estimator at initialization (equal to the prior) are
    DPS and DMAP, bit for bit; the extra evaluation of DPS+CSE changes no random draw."""
    prior = load_prior("mnist")  # a random prior's reverse process leaves the data range
    cse = fresh_cse(prior)
    task = make_task("sr4", prior.shape)
    y = task.simulate(data[:2], sample_generators(1, 2))
    for method, base in (("dps+cse", "dps"), ("dmap+cse", "dmap")):
        for guide in ("prior", "cse"):
            a = solve(method, prior, task, y, cse=cse, generator=sample_generators(3, 2), guide=guide, **OPTIONS[method])
            b = solve(base, prior, task, y, generator=sample_generators(3, 2), **OPTIONS[method])
            assert torch.equal(a, b), (method, guide)


@pytest.mark.parametrize("method", CSE_METHODS)
def test_cse_methods_batch_equals_loop_and_count_evaluations(method, trained, data):
    prior, path = trained
    cse = load_cse(prior, path)
    task = make_task("sr4", prior.shape)
    y = task.simulate(data[:3], sample_generators(1, 3))
    calls = {"n": 0}
    forward = prior.net.forward

    def counted(x, t, residuals=None):
        calls["n"] += x.shape[0]
        return forward(x, t, residuals)

    prior.net.forward = counted
    try:
        batch = solve(method, prior, task, y, cse=cse, generator=sample_generators(5, 3), **OPTIONS[method])
    finally:
        del prior.net.forward
    assert calls["n"] == 3 * resolve_options(method, "mnist", "sr4", **OPTIONS[method]).nfe()
    single = torch.cat(
        [
            solve(method, prior, task, y[i : i + 1], cse=cse, generator=sample_generators(5, 1, offset=i), **OPTIONS[method])
            for i in range(3)
        ]
    )
    # float32 sums of batched convolutions differ in the last bits (1e-6 per evaluation, measured); six guided
    # steps amplify that up to ~3e-3 on a pixel for some trained adapters; a sample coupled to another differs by O(0.1)
    torch.testing.assert_close(batch, single, rtol=1e-2, atol=5e-3)
    assert batch.shape == (3, 1, 32, 32) and batch.abs().max() <= 1


def test_budget_arithmetic_counts_two_evaluations_per_guided_dps_step():
    opts = METHODS["dps+cse"].options
    assert opts(guide="prior").for_budget(1000).steps == 500 and opts(guide="cse").for_budget(1000).steps == 1000
    assert opts(steps=500, guide="prior").nfe() == 1000
    assert METHODS["dmap+cse"].options(steps=250, inner_steps=3, guide="prior").nfe() == 997


def test_presets_start_from_the_base_method():
    opts = resolve_options("dps+cse", "mnist", "sr4")  # 1000 evaluations: 500 steps of two
    # DPS's strength at the same number of steps (its table is keyed by steps, not evaluations)
    assert opts.step_size == resolve_options("dps", "mnist", "sr4", nfe=500).step_size
    assert opts.steps == 500 and opts.guide == "prior"
    with pytest.raises(ValueError, match="guide must be one of prior, cse"):
        resolve_options("dps+cse", "mnist", "sr4", guide="both")


def test_an_adapter_serves_only_its_noise_level(trained, data):
    """Regression: an adapter trained at sigma_y = 0.05 was used silently at 0.2."""
    prior, path = trained
    with pytest.raises(ValueError, match="trained at sigma_y = 0.05, not 0.2"):
        load_cse(prior, path, "sr4", sigma_y=0.2)
    cse = load_cse(prior, path, "sr4", sigma_y=0.05)
    task = make_task("sr4", prior.shape, sigma_y=0.2)
    y = task.simulate(data[:1], seeded(0))
    with pytest.raises(ValueError, match="trained at sigma_y = 0.05"):
        solve("dps+cse", prior, task, y, cse=cse, steps=2)


def test_training_and_loading_leave_the_callers_prior_alone(data, tmp_path):
    """Regression: train_cse and load_cse switched off requires_grad on the caller's prior."""
    prior = tiny_prior()
    assert all(p.requires_grad for p in prior.parameters())
    path = train_cse(prior, "sr4", data[:4], [0, 1, 2, 3], tmp_path / "a.safetensors", steps=1, batch_size=2)
    assert all(p.requires_grad for p in prior.parameters())
    cse = load_cse(prior, path)
    assert all(p.requires_grad for p in prior.parameters()) and prior.training
    assert not any(p.requires_grad for p in cse.parameters()) and not cse.training


def test_the_adapter_input_is_the_kind_it_was_trained_with(trained, data):
    """New adapters take the regularized back-projection; an adapter file without the
    field (the first shipped ones) takes A^+ y."""
    from dmap.cse import condition

    prior, path = trained
    cse = load_cse(prior, path)
    task = make_task("deblur-aniso", prior.shape, sigma_y=0.05)
    y = task.simulate(data[:2], sample_generators(1, 2))
    assert cse.meta.condition == "regularized"
    torch.testing.assert_close(cse.condition(task.operator, y), condition(task.operator, y, "regularized", 0.05))
    assert find_cse(load_prior("mnist"), "sr4").meta.condition == "pinv"
    regularized, pinv = (condition(task.operator, y, k, 0.05)[:, :1].abs().max() for k in ("regularized", "pinv"))
    assert regularized < 3 < 100 < pinv  # A^+ y amplifies the noise of deblur-aniso
