"""Bring your own problem: operators from torch functions, composition, noise models,
measured kernels and masks, and the example of docs/operators.md."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dmap
from dmap.cli import main
from dmap.data import mnist, save_image
from dmap.metrics import psnr
from dmap.operators import (
    FunctionOperator,
    GaussianNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    cgls,
    check_adjoint,
    make_task,
)
from dmap.operators.nonlinear_blur import nonlinear_blur_weights
from dmap.rng import sample_generators, seeded

OPERATORS_DOC = Path(__file__).resolve().parent.parent / "docs" / "operators.md"


def conv_subsample(weight: torch.Tensor):
    """A user's forward model as a plain function: a 3 x 3 convolution, then 2x subsampling."""

    def A(x):
        return F.conv2d(x, weight.to(x), padding=1)[..., ::2, ::2]

    return A


@pytest.fixture(scope="module")
def user_op():
    weight = torch.rand(1, 1, 3, 3, generator=seeded(0), dtype=torch.float64)
    return FunctionOperator(conv_subsample(weight / weight.sum()), (1, 32, 32))


def test_the_autograd_adjoint_passes_the_adjointness_test(user_op):
    assert user_op.y_shape == (1, 16, 16)
    assert check_adjoint(user_op, (1, 32, 32), generator=seeded(1)) < 1e-5
    # and it is the true adjoint, not merely consistent: a wrong one fails the same check
    wrong = FunctionOperator(user_op.fn, (1, 32, 32), AT=lambda y: F.interpolate(y, scale_factor=2))
    assert check_adjoint(wrong, (1, 32, 32), generator=seeded(1)) > 1e-2


def test_conjugate_gradients_give_the_pseudo_inverse():
    sr4 = make_task("sr4", (1, 32, 32)).operator.double()
    y = torch.randn(2, 1, 8, 8, generator=seeded(2), dtype=torch.float64)
    torch.testing.assert_close(cgls(sr4, y), sr4.pinv(y), rtol=1e-7, atol=1e-7)


def test_operators_compose():
    blur = make_task("deblur-gauss", (1, 32, 32)).operator
    down = make_task("sr4", (1, 32, 32)).operator
    both = down @ blur
    x = torch.randn(2, 1, 32, 32, generator=seeded(3))
    torch.testing.assert_close(both.A(x), down.A(blur.A(x)))
    assert both.linear and check_adjoint(both.double(), (1, 32, 32), generator=seeded(4)) < 1e-10
    with pytest.raises(ValueError, match="cannot compose"):
        blur @ down


@pytest.mark.parametrize("method", ["dps", "dmap", "diffpir"])
def test_a_user_operator_restores_digits_better_than_its_back_projection(user_op, method):
    prior = dmap.load_prior("mnist")
    task = make_task(user_op, sigma_y=0.05)
    x = mnist("test")[0][:4]
    y = task.simulate(x, generator=sample_generators(1, 4))
    strength = {"lam": 1.0} if method == "diffpir" else {"step_size": 0.05}  # per unit of time: 1.0 per step at 50 steps
    out = dmap.solve(method, prior, task, y, steps=50, generator=sample_generators(2, 4), **strength)
    baseline = user_op.pinv(y.double()).float().clamp(-1, 1)
    assert float(psnr(out, x).mean()) > float(psnr(baseline, x).mean()) + 1.0


def test_poisson_noise_statistics_and_weights():
    ax = torch.full((2, 1, 16, 16), 0.2)  # intensity z = 0.6
    y = make_task(FunctionOperator(lambda v: v, (1, 16, 16)), noise=PoissonNoise(50.0)).simulate(ax, seeded(5))
    counts = (y + 1) / 2 * 50
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-4)  # photon counts
    assert float(y.mean()) == pytest.approx(0.2, abs=0.05)
    assert float(y.var()) == pytest.approx(4 * 0.6 / 50, rel=0.15)
    op, yw = PoissonGaussianNoise(50.0, 0.05).whiten(FunctionOperator(lambda v: v, (1, 16, 16)), y)
    w = op.w
    assert torch.allclose(w.pow(2).reshape(2, -1).mean(1), torch.ones(2)) and torch.equal(yw, w * y)
    assert GaussianNoise(0.05).whiten(op, y) == (op, y)


def test_poisson_restorations_are_finite_and_a_batch_equals_its_images():
    prior = dmap.load_prior("mnist")
    task = make_task("sr4", prior.shape, noise=PoissonNoise(10.0))  # ten photons: very noisy
    x = mnist("test")[0][:3]
    y = task.simulate(x, generator=sample_generators(1, 3))
    again = task.simulate(x[1:2], generator=sample_generators(1, 1, offset=1))
    assert torch.equal(y[1:2], again)
    opts = {"steps": 20, "step_size": 0.5}
    batch = dmap.solve("dps", prior, task, y, generator=sample_generators(2, 3), **opts)
    single = torch.cat(
        [dmap.solve("dps", prior, task, y[i : i + 1], generator=sample_generators(2, 1, i), **opts) for i in range(3)]
    )
    assert torch.isfinite(batch).all()
    # equal up to the float32 rounding of the convolutions, which differs with the batch size
    # and which DPS amplifies (at most 0.055 per pixel on `mnist`, benchmarks/results/batch_independence.md)
    torch.testing.assert_close(batch, single, rtol=0, atol=5e-3)
    with pytest.raises(ValueError, match="trained for Gaussian noise"):
        dmap.solve("dps+cse", prior, task, y, steps=2)


def test_measured_kernels_and_masks_replace_the_tasks_own():
    k = torch.zeros(4, 6, dtype=torch.float64)  # an even-sized kernel
    k[1, 2:5] = 2.0
    task = make_task("deblur-gauss", (1, 32, 32), kernel=k)
    assert torch.equal(task.operator.kernel, k / k.sum())
    mask = torch.rand(32, 32, generator=seeded(6)) > 0.5
    assert torch.equal(make_task("inpaint-random", (1, 32, 32), mask=mask).operator.mask, mask)
    with pytest.raises(ValueError, match="a kernel applies to the tasks deblur-aniso"):
        make_task("sr4", (1, 32, 32), kernel=k)


@pytest.mark.parametrize(
    "kind, content, message",
    [
        ("kernel", np.full((3, 3), np.nan), "NaN"),
        ("kernel", np.zeros((3, 3)), "not all zero"),
        ("kernel", np.ones((40, 40)), "does not fit"),
        ("kernel", np.ones((2, 2, 2)), "2-D"),
        ("mask", np.ones((16, 16)), "the mask is (16, 16)"),
        ("mask", np.zeros((32, 32)), "observes no pixel"),
    ],
)
def test_bad_kernels_and_masks_exit_2_and_write_nothing(tmp_path, capsys, kind, content, message):
    digit = tmp_path / "d.png"
    save_image(digit, mnist("test")[0][0])
    if kind == "kernel":
        path = tmp_path / "k.npy"
        np.save(path, content)
        task = "deblur-gauss"
    else:
        path = tmp_path / "m.png"
        save_image(path, torch.from_numpy(content).float()[None] * 2 - 1)
        task = "inpaint-box"
    argv = [
        "restore",
        str(digit),
        "--task",
        task,
        "--method",
        "dps",
        "--steps",
        "2",
        f"--{kind}",
        str(path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and f"--{kind}" in err and not (tmp_path / "o").exists()


def test_a_kernel_image_restores_from_the_cli_and_bench(tmp_path, capsys):
    digit = tmp_path / "d.png"
    save_image(digit, mnist("test")[0][0])
    kernel = tmp_path / "k.png"
    save_image(kernel, torch.tensor([[-1.0, 1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, -1.0]])[None])
    argv = [
        "restore",
        str(digit),
        "--task",
        "deblur-motion",
        "--method",
        "dps",
        "--steps",
        "3",
        "--kernel",
        str(kernel),
        "--step-size",
        "0.003",
    ]
    assert main(argv + ["--out", str(tmp_path / "o")]) == 0
    bench = [
        "bench",
        "--prior",
        "gmm-mnist",
        "--tasks",
        "deblur-motion",
        "--methods",
        "dps[step_size=0.003]",
        "--images",
        "1",
        "--nfe",
        "3",
        "--kernel",
        str(kernel),
    ]
    assert main(bench + ["--out", str(tmp_path / "b")]) == 0
    no_kernel = [("sr4" if a == "deblur-motion" else a) for a in bench]
    assert main(no_kernel + ["--out", str(tmp_path / "c")]) == 2
    assert "none of the tasks takes a kernel" in capsys.readouterr().err


def test_new_tasks_are_listed_and_the_nonlinear_blur_is_the_seeded_one(capsys):
    assert main(["list"]) == 0
    listed = {line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("task")}
    assert {"sr8", "deblur-gauss61", "deblur-nonlinear", "colorize"} <= listed
    op = make_task("deblur-nonlinear", (1, 32, 32)).operator
    weights = nonlinear_blur_weights()
    for name, w in weights.items():
        assert torch.equal(getattr(op, name.replace(".", "_")), w)
    # the seeded draw, pinned (the values the task has had since it was added)
    torch.testing.assert_close(
        weights["conv1.weight"][0, 0, 0, :3], torch.tensor([0.224911, -0.306476, 0.052984]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        weights["conv2.weight"][0, 7, 4, :3], torch.tensor([-0.123085, 0.069453, 0.078395]), atol=1e-6, rtol=0
    )
    a, b = (torch.rand(1, 1, 32, 32, generator=seeded(i)) * 2 - 1 for i in (7, 8))
    assert not torch.allclose(op.A(a + b), op.A(a) + op.A(b), atol=1e-3)  # nonlinear
    assert not op.linear


def test_the_documented_example_runs_as_written():
    text = OPERATORS_DOC.read_text()
    block = re.search(r"## Operators from any torch function\n.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 20
    scope: dict = {}
    exec(compile(block, "docs/operators.md", "exec"), scope)
    assert scope["x0"].shape == (4, 1, 32, 32)
