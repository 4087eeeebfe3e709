import numpy as np
import pytest
import torch
from PIL import Image

from dmap.data import list_images, load_image, mnist, mnist_indices, save_image


def test_mnist_split():
    train, ytr = mnist("train")
    val, yva = mnist("validation")
    test, yte = mnist("test")
    counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    n_train = sum(round(0.9 * c) for c in counts)
    assert n_train == 9001 and train.shape == (9001, 1, 32, 32) and (len(val), len(test)) == (498, 501)
    assert train.dtype == torch.float32 and float(train.min()) == -1.0 and float(train.max()) == 1.0
    # 2 px of background on every side
    assert (train[:, :, :2] == -1).all() and (train[:, :, :, -2:] == -1).all()
    total = sum(torch.bincount(y, minlength=10) for y in (ytr, yva, yte))
    assert total.tolist() == counts
    assert torch.bincount(yte, minlength=10).tolist() == [c - round(0.95 * c) for c in counts]
    # per class, in file order: the first 90 % train, the next 5 % validation, the last 5 % test
    tr, va, te = (mnist_indices(s) for s in ("train", "validation", "test"))
    assert len(np.union1d(np.union1d(tr, va), te)) == len(tr) + len(va) + len(te) == 10000
    zeros = np.arange(1001)
    assert np.array_equal(tr[:901], zeros[:901]) and np.array_equal(va[:50], zeros[901:951])
    assert np.array_equal(te[:50], zeros[951:])
    with pytest.raises(ValueError, match="unknown split"):
        mnist("val")


def test_presets_are_tuned_on_train_digits_and_checked_on_validation_ones_never_test_ones():
    from types import SimpleNamespace

    from dmap.catalogue import train_images, tuning_problem
    from dmap.data import mnist_spread

    shape = SimpleNamespace(image_shape=(1, 32, 32))
    _, x, _ = tuning_problem(shape, "sr4", 4)
    assert torch.equal(x, train_images(4))
    task, x, y = tuning_problem(shape, "sr4", 4, sigma_y=0.0, split="validation")
    assert torch.equal(x, mnist_spread(4, "validation")[0]) and torch.allclose(y, task.operator.A(x))
    with pytest.raises(ValueError, match="never on test"):
        tuning_problem(shape, "sr4", 4, split="test")


def test_the_second_half_of_a_check_is_other_validation_digits_under_other_noise_streams():
    from types import SimpleNamespace

    from dmap.catalogue import TASK_SEED, tuning_problem
    from dmap.data import mnist_midway, mnist_spread
    from dmap.rng import sample_generators

    _, spread = mnist_spread(32, "validation")
    x, midway = mnist_midway(32, "validation")
    assert len(midway) == 31 and not set(midway.tolist()) & set(spread.tolist())
    assert bool(((spread[:-1] < midway) & (midway < spread[1:])).all())  # one between each two
    shape = SimpleNamespace(image_shape=(1, 32, 32))
    task, x4, y = tuning_problem(shape, "inpaint-random", 4, sigma_y=0.05, split="validation", midway=True)
    assert torch.equal(x4, mnist_midway(4, "validation")[0])
    # its noise: streams 4, 5, 6 of the seed, after those of the 4 digits of the first half
    assert torch.equal(y, task.simulate(x4, generator=sample_generators(TASK_SEED + 1, 3, 4)))
    assert not torch.allclose(y, task.simulate(x4, generator=sample_generators(TASK_SEED + 1, 3)))
    with pytest.raises(ValueError, match="second set of validation"):
        tuning_problem(shape, "sr4", 4, midway=True)


def test_image_round_trip(tmp_path):
    x = mnist("test")[0][3]
    save_image(tmp_path / "d.png", x)
    torch.testing.assert_close(load_image(tmp_path / "d.png"), x, atol=1 / 255, rtol=0)
    rgb = torch.rand(3, 10, 12) * 2 - 1
    save_image(tmp_path / "c.png", rgb)
    assert load_image(tmp_path / "c.png").shape == (3, 10, 12)
    Image.fromarray(np.zeros((5, 5, 4), np.uint8)).save(tmp_path / "a.png")  # RGBA: alpha dropped
    assert load_image(tmp_path / "a.png").shape == (3, 5, 5)


def test_list_images(tmp_path):
    save_image(tmp_path / "b.png", torch.zeros(1, 4, 4))
    save_image(tmp_path / "a.png", torch.zeros(1, 4, 4))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.png"]
    with pytest.raises(FileNotFoundError):
        list_images([tmp_path / "none.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image"):
        list_images([tmp_path / "empty"])
