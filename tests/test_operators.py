"""One suite over the task registry: adding a task enrols its operator."""

import math

import pytest
import torch

import dmap
from dmap.operators import TASKS, SVDOperator, make_task
from dmap.operators.blur import motion_kernel
from dmap.rng import seeded

SHAPES = [(1, 32, 32), (3, 64, 48)]


def build(name, shape, seed=0, **kw):
    """The task, or a skip where it does not apply to the shape (colorize on grey images)."""
    try:
        return make_task(name, shape, generator=torch.Generator().manual_seed(seed), **kw)
    except ValueError as e:
        if "needs colour" in str(e):
            pytest.skip(str(e))
        raise


LINEAR = [n for n in TASKS if make_task(n, (3, 32, 32), generator=torch.Generator().manual_seed(0)).operator.linear]


def rand(shape, seed, n=2):
    return torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(TASKS))
def test_shapes_and_dtypes(name, shape):
    op = build(name, shape).operator
    x = rand(shape, 1).float()
    y = op.A(x)
    assert y.shape == (2, *op.y_shape) and y.dtype == torch.float32
    assert op.x_shape == shape
    assert op.view(y).dim() == 4
    if op.linear:
        assert op.AT(y).shape == x.shape and op.pinv(y).shape == x.shape


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", LINEAR)
def test_adjoint(name, shape):
    op = build(name, shape).operator.double()
    x = rand(shape, 2)
    y = torch.randn(2, *op.y_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.AT(y)).sum()
    assert abs(float(lhs - rhs)) / abs(float(lhs)) < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", LINEAR)
def test_pseudo_inverse(name, shape):
    op = build(name, shape).operator.double()
    ax = op.A(rand(shape, 4))
    torch.testing.assert_close(op.A(op.pinv(ax)), ax, rtol=1e-8, atol=1e-8)
    # the Moore-Penrose pinv lies in the row space: pinv(A pinv(y)) = pinv(y) (this
    # identity amplifies rounding by the condition number, up to 1e10 for the blurs)
    p = op.pinv(ax)
    torch.testing.assert_close(op.pinv(op.A(p)), p, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", [n for n in LINEAR if isinstance(make_task(n, (3, 32, 32)).operator, SVDOperator)])
def test_svd_is_orthonormal(name, shape):
    op = build(name, shape).operator.double()
    d = math.prod(shape)
    x = rand(shape, 5)
    c = op.VT(x)
    assert c.shape == (2, d)
    torch.testing.assert_close(op.V(c), x)
    torch.testing.assert_close(c.norm(dim=1), x.reshape(2, -1).norm(dim=1))
    c2 = torch.randn(2, d, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(op.VT(op.V(c2)), c2)
    m = op.singular_values().numel()
    u = torch.randn(2, m, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(op.UT(op.U(u)), u)
    # A = U diag(s) V^T[:m], checked against A applied directly
    torch.testing.assert_close(op.U(op.singular_values().double() * c[:, :m]), op.A(x))


def test_svd_operators_exist():
    kinds = {n for n in LINEAR if isinstance(build(n, (3, 32, 32)).operator, SVDOperator)}
    assert kinds == {"inpaint-box", "inpaint-random", "sr4", "cs2"}


@pytest.mark.parametrize("name", LINEAR)
def test_matrix_equals_operator(name):
    op = build(name, (1, 32, 32)).operator
    M = op.matrix()
    x = rand((1, 32, 32), 8)
    assert M.shape == (math.prod(op.y_shape), 1024) and M.dtype == torch.float64
    torch.testing.assert_close((x.reshape(2, -1) @ M.T).reshape(2, *op.y_shape), op.double().A(x))


@pytest.mark.parametrize("name", list(TASKS))
def test_deterministic_under_a_generator(name):
    x = rand((1, 32, 32), 9).float()
    a, b = build(name, (1, 32, 32), seed=3), build(name, (1, 32, 32), seed=3)
    ya = a.simulate(x, generator=torch.Generator().manual_seed(1))
    yb = b.simulate(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ya, yb)
    assert not torch.equal(ya, a.simulate(x, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name", ["inpaint-box", "inpaint-random", "deblur-motion", "cs2"])
def test_seed_changes_random_operators(name):
    x = rand((1, 32, 32), 10).float()
    assert not torch.equal(build(name, (1, 32, 32), seed=1).operator.A(x), build(name, (1, 32, 32), seed=2).operator.A(x))


@pytest.mark.parametrize("name", list(TASKS))
def test_noise_std(name):
    task = build(name, (3, 64, 48), sigma_y=0.05)
    x = rand((3, 64, 48), 11, n=4).float().clamp(-1, 1)
    n = task.simulate(x, generator=torch.Generator().manual_seed(0)) - task.operator.A(x)
    k = n.numel()  # tolerances of 4 standard errors for the k draws
    assert float(n.std()) == pytest.approx(0.05, rel=4 / math.sqrt(2 * k))
    assert float(n.mean()) == pytest.approx(0.0, abs=4 * 0.05 / math.sqrt(k))


def test_task_settings_at_32px():
    box = build("inpaint-box", (1, 32, 32)).operator
    assert int((~box.mask).sum()) == 16 * 16
    rows, cols = (~box.mask).nonzero(as_tuple=True)
    assert rows.min() >= 2 and cols.min() >= 2 and rows.max() <= 29 and cols.max() <= 29
    assert build("inpaint-random", (1, 32, 32)).operator.y_shape == (round(0.3 * 1024),)
    assert build("sr4", (1, 32, 32)).operator.y_shape == (1, 8, 8)
    assert build("cs2", (1, 32, 32)).operator.y_shape == (512,)
    assert build("deblur-motion", (1, 32, 32)).operator.kernel.shape == (9, 9)
    assert build("deblur-gauss61", (1, 32, 32)).operator.kernel.shape == (3, 3)
    assert build("deblur-gauss61", (3, 256, 256)).operator.kernel.shape == (31, 31)
    assert build("sr8", (1, 32, 32)).operator.y_shape == (1, 4, 4)
    assert build("colorize", (3, 32, 32)).operator.y_shape == (1, 32, 32)
    blur = build("deblur-aniso", (1, 32, 32)).operator
    assert float(blur.kernel.sum()) == pytest.approx(1.0)
    # wider along the width (sigma 3) than along the height (sigma 0.5)
    assert blur.kernel.shape[1] > blur.kernel.shape[0]


def test_motion_kernel():
    k = motion_kernel(9, 0.5, torch.Generator().manual_seed(0))
    assert k.shape == (9, 9) and float(k.sum()) == pytest.approx(1.0) and (k >= 0).all()
    assert torch.equal(k, motion_kernel(9, 0.5, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("sr4", (1, 30, 30), "divisible by 4"),
        ("nope", (1, 32, 32), "unknown task"),
    ],
)
def test_bad_settings(name, shape, message):
    with pytest.raises(ValueError, match=message):
        build(name, shape)


def test_negative_sigma_is_refused():
    with pytest.raises(ValueError, match="sigma_y"):
        build("sr4", (1, 32, 32), sigma_y=-0.1)


def test_the_five_paper_tasks_at_512_px_are_pinned():
    """docs/reproduce.md's table: box 256 x 256 (25 % missing), 70 % random pixels missing,
    the anisotropic kernel's spread (37.8 px wide, 1.26 px high), 4x pooling, half the
    coefficients for cs2."""
    shape = (3, 512, 512)
    box = dmap.make_task("inpaint-box", shape, generator=seeded(0)).operator
    assert float(box.mask.float().mean()) == 0.75
    rows, cols = torch.nonzero(box.mask == 0, as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (256, 256)
    assert abs(float(dmap.make_task("inpaint-random", shape, generator=seeded(0)).operator.mask.float().mean()) - 0.3) < 1e-3
    k = dmap.make_task("deblur-aniso", shape).operator.kernel.double()
    k = k / k.sum()
    r, c = torch.arange(k.shape[0], dtype=torch.float64), torch.arange(k.shape[1], dtype=torch.float64)
    spread = lambda w, pos: float(((w * (pos - (w * pos).sum()) ** 2).sum()).sqrt())  # noqa: E731
    assert spread(k.sum(1), r) == pytest.approx(0.5 * 2 ** (4 / 3), rel=0.02)
    assert spread(k.sum(0), c) == pytest.approx(3.0 * (20 / 3) ** (4 / 3), rel=0.02)
    assert dmap.make_task("sr4", shape).operator.y_shape == (3, 128, 128)
    assert dmap.make_task("cs2", shape, generator=seeded(0)).operator.y_shape == (3 * 512 * 512 // 2,)
