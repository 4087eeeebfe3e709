import json

import pytest
import torch
from safetensors.torch import load_file

from dmap.cli import main
from dmap.data import mnist
from dmap.priors.unet import UNet, UNetConfig, load_unet_prior
from dmap.train import MNIST_ARCHITECTURE, train_prior
from dmap.utils import WeightsError

TINY = MNIST_ARCHITECTURE.replace(channels=8, groups=4)


@pytest.fixture(scope="module")
def data():
    return mnist("train")[0][:64]


def test_unet_shapes_and_zero_init():
    net = UNet(TINY)
    x = torch.randn(3, 1, 32, 32)
    eps = net(x, torch.tensor([0, 10, 999]))
    assert eps.shape == x.shape and eps.dtype == torch.float32
    assert torch.equal(eps, torch.zeros_like(eps))  # zero-initialized output layer
    assert sum(p.numel() for p in UNet(MNIST_ARCHITECTURE).parameters()) <= 2_500_000


def test_training_lowers_the_loss(data, tmp_path):
    train_prior(data, tmp_path, architecture=TINY, steps=60, batch_size=16, lr=2e-3, warmup=5, checkpoint_every=100)
    losses = [float(line.split(",")[1]) for line in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_weights_reload_to_identical_outputs(data, tmp_path):
    weights = train_prior(data, tmp_path, name="tiny", architecture=TINY, steps=4, batch_size=8, warmup=1)
    prior = load_unet_prior(weights)
    cfg = json.loads((tmp_path / "tiny.json").read_text())
    assert cfg["training"]["steps"] == 4 and cfg["data"]["n"] == 64 and prior.name == "tiny"
    net = UNet(UNetConfig.from_dict(cfg["architecture"]))
    net.load_state_dict(load_file(str(weights)))
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(prior.eps(x, t), net.eval()(x, t))
        assert torch.equal(load_unet_prior(weights).eps(x, t), prior.eps(x, t))
    assert prior.eps(x, 5).shape == x.shape


def test_resume_equals_uninterrupted(data, tmp_path):
    kw = dict(architecture=TINY, batch_size=8, warmup=2, checkpoint_every=3)
    a = train_prior(data, tmp_path / "a", steps=6, **kw)
    train_prior(data, tmp_path / "b", steps=3, **kw)
    b = train_prior(data, tmp_path / "b", steps=6, **kw)  # resumes from step 3
    wa, wb = load_file(str(a)), load_file(str(b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "loss.csv").read_text().count("\n") == (tmp_path / "b" / "loss.csv").read_text().count("\n")
    with pytest.raises(ValueError, match="another configuration"):
        train_prior(data, tmp_path / "b", steps=6, architecture=TINY, batch_size=4)


def test_corrupt_or_truncated_weights_give_a_clear_error(data, tmp_path, capsys):
    weights = train_prior(data, tmp_path, name="w", architecture=TINY, steps=1, batch_size=4, warmup=1)
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match="not a valid"):
        load_unet_prior(weights)
    weights.write_bytes(b"garbage" * 10)
    with pytest.raises(WeightsError, match="not a valid"):
        load_unet_prior(weights)
    with pytest.raises(WeightsError, match="no such file"):
        load_unet_prior(tmp_path / "missing.safetensors")


def test_cli_refuses_corrupt_weights_with_exit_2(data, tmp_path, capsys):
    weights = train_prior(data, tmp_path, name="w", architecture=TINY, steps=1, batch_size=4, warmup=1)
    save = mnist("test")[0][0]
    from dmap.data import save_image

    save_image(tmp_path / "d.png", save)
    # a prior trained with dmap train loads by path (sampling: a 1-step prior cannot restore)
    assert main(["sample", "--prior", str(weights), "-n", "2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    argv = [
        "restore",
        str(tmp_path / "d.png"),
        "--task",
        "sr4",
        "--method",
        "dps",
        "--steps",
        "2",
        "--prior",
        str(weights),
        "--out",
        str(tmp_path / "out2"),
    ]
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "w.safetensors: not a valid prior weights file" in err
    assert not (tmp_path / "out2").exists()
    # the weights file is named when missing, not the description beside it
    weights.unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "w.safetensors: no such file" in err and ".json" not in err
