"""LPIPS, FID and KID from local weight files (random weights here, in the published
layouts): known values, determinism, unbiasedness, the bench and restore columns and every
error path.  Parity with the reference packages: benchmarks/peers/metrics_parity.py."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import dmap.metrics as dm
from dmap.cli import main
from dmap.data import mnist_spread, save_image
from dmap.metrics import perceptual as P
from dmap.metrics.inception import FIDInception
from dmap.metrics.lpips import LPIPS
from dmap.utils import WeightsError


def smooth(n: int, size: int, g: torch.Generator, scale: int = 4) -> torch.Tensor:
    low = torch.rand(n, 3, size // scale, size // scale, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Seeded networks under the published names; the Inception's batch norms set to the
    statistics of smooth random images (so that its features differ between images)."""
    folder = tmp_path_factory.mktemp("metric-weights")
    torch.manual_seed(0)
    for net in ("alex", "vgg"):
        state = LPIPS(net).state_dict()
        extra = {"classifier.1.weight": torch.zeros(4, 4)}  # a torchvision file's classifier: ignored
        torch.save({k: v for k, v in state.items() if k.startswith("features.")} | extra, folder / P.BACKBONE[net])
        torch.save({k: v.abs() for k, v in state.items() if k.startswith("lin")}, folder / P.HEAD[net])
    net = FIDInception().train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net(smooth(6, 32, torch.Generator().manual_seed(1)))
    torch.save(net.state_dict() | {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, folder / P.INCEPTION)
    return folder


@pytest.fixture(scope="module")
def digits():
    return mnist_spread(8, "test")[0]


def test_lpips_is_zero_on_identical_images_symmetric_and_deterministic(weights, digits):
    x, y = digits[:4], digits[4:]
    assert torch.equal(dm.lpips(x, x, weights=weights), torch.zeros(4))
    d = dm.lpips(x, y, weights=weights)
    assert (d > 1e-4).all()
    assert torch.equal(d, dm.lpips(x, y, weights=weights))
    assert torch.allclose(d, dm.lpips(y, x, weights=weights), rtol=1e-6, atol=0)
    rgb = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731
    assert torch.allclose(d, dm.lpips(rgb(x), rgb(y), weights=weights, net="alex"), rtol=1e-6, atol=0)
    assert not torch.allclose(d, dm.lpips(x, y, weights=weights, net="vgg"))


def test_lpips_is_linear_in_its_heads(weights, digits):
    """d = sum_l mean ||w_l * diff_l||^2 is linear in w_l: doubling every head doubles it."""
    net = P.lpips_net(weights, "alex")
    x, y = digits[:4], digits[4:]
    before = net(x, y)
    heads = [getattr(net, f"lin{i}").model[1].weight for i in range(5)]
    try:
        for w in heads:
            w.mul_(2)
        assert torch.allclose(net(x, y), 2 * before, rtol=1e-5)
    finally:
        for w in heads:
            w.div_(2)


def test_fid_of_a_set_against_itself_is_zero_and_against_another_is_not(weights, digits):
    feats = dm.inception_features(digits, weights=weights)
    assert feats.shape == (8, 2048) and feats.std(0).mean() > 1e-3  # features differ between images
    assert abs(dm.fid(digits, digits, weights=weights)) < 1e-6 * float(feats.var(0).sum())
    assert dm.fid(digits[:4], digits[4:], weights=weights) > 1e-3 * float(feats.var(0).sum())


def test_frechet_distance_takes_the_same_value_by_both_routes():
    """Few samples (nuclear norm of A B^T) and the covariance square root give one value."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 5, generator=g, dtype=torch.float64), 1.5 * torch.randn(4, 5, generator=g, dtype=torch.float64) + 0.3
    assert dm.frechet_distance(a, b) == pytest.approx(float(_eig_route(a, b)), rel=1e-9)  # (6 > 5: the eigenvalue route)
    assert dm.frechet_distance(a[:5], b) == pytest.approx(float(_eig_route(a[:5], b)), rel=1e-7)  # (5 <= 5: the nuclear norm)


def _eig_route(a, b):
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    lam, q = torch.linalg.eigh(sa)
    root = (q * lam.clamp_min(0).sqrt()) @ q.T
    cross = torch.linalg.eigvalsh(root @ sb @ root).clamp_min(0).sqrt().sum()
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + sa.trace() + sb.trace() - 2 * cross


def test_kid_is_the_unbiased_mmd_and_averages_to_zero_on_one_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    k = lambda u, v: float((u @ v / 3 + 1) ** 3)  # noqa: E731
    xx = sum(k(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(b[i], b[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(a[i], b[j]) for i in range(5) for j in range(4)) / 20
    assert dm.kernel_distance(a, b) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    draws = [dm.kernel_distance(torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)) for _ in range(400)]
    mean, se = np.mean(draws), np.std(draws, ddof=1) / math.sqrt(len(draws))
    assert abs(mean) < 3 * se, (mean, se)
    shifted = [dm.kernel_distance(torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g) + 1) for _ in range(20)]
    assert np.mean(shifted) > 10 * se
    with pytest.raises(ValueError, match="two samples"):
        dm.kernel_distance(a[:1], b)


def test_weight_files_are_found_checked_and_named(weights, tmp_path, monkeypatch, digits):
    monkeypatch.delenv(P.ENV, raising=False)
    with pytest.raises(WeightsError, match="--metric-weights DIR or set DMAP_METRIC_WEIGHTS"):
        P.weights_dir(None)
    with pytest.raises(WeightsError, match="no such folder"):
        P.weights_dir(tmp_path / "absent")
    with pytest.raises(WeightsError, match="alexnet-owt-7be5be79.pth: no such file"):
        P.lpips_net(tmp_path, "alex")
    (tmp_path / P.BACKBONE["alex"]).write_bytes((weights / P.BACKBONE["vgg"]).read_bytes())  # the wrong network
    (tmp_path / P.HEAD["alex"]).write_bytes((weights / P.HEAD["alex"]).read_bytes())
    with pytest.raises(WeightsError, match=r"alexnet-owt-7be5be79.pth: not the weights of LPIPS-alex \(first mismatch"):
        P.lpips_net(tmp_path, "alex")
    state = torch.load(weights / P.BACKBONE["alex"], weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "alexnet-owt-7be5be79.safetensors")
    monkeypatch.setenv(P.ENV, str(tmp_path))  # the .safetensors file is read before the .pth beside it
    assert torch.equal(dm.lpips(digits[:2], digits[2:4]), dm.lpips(digits[:2], digits[2:4], weights=weights))


BENCH = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "dps,dmap", "--nfe", "6", "--images", "5", "--batch-size", "3"]


def test_bench_adds_lpips_fid_and_kid_and_resumes_to_the_same_numbers(weights, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(BENCH + ["--metric-weights", str(weights), "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(0 < r["lpips_alex"] < 1 for r in rows) and "lpips_vgg" not in rows[0]
    for cell in first:
        assert cell["set_images"] == 5 and cell["fid"] > 0 and math.isfinite(cell["kid"])
        assert cell["lpips_alex_mean"] == pytest.approx(np.mean([r["lpips_alex"] for r in rows if r["method"] == cell["method"]]))
    assert "LPIPS-alex" in (out / "summary.md").read_text() and "fid" in (out / "summary.csv").read_text().splitlines()[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["metrics"]) == {"lpips-alex", "fid"}
    (out / "features" / "reference.npz").unlink()  # the truth's features are remade; the cells' kept ones reused
    assert main(BENCH + ["--metric-weights", str(weights), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(c["fid"], c["kid"], c["lpips_alex_mean"]) for c in again] == [
        (c["fid"], c["kid"], c["lpips_alex_mean"]) for c in first
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metric-weights", "{empty}"], "alexnet-owt-7be5be79.pth: no such file"),
        (["--metric-weights", "{empty}", "--metrics", "fid"], "pt_inception-2015-12-05-6726825d.pth: no such file"),
        (["--metrics", "lpips-alex"], "give --metric-weights DIR or set DMAP_METRIC_WEIGHTS"),
    ],
)
def test_missing_metric_weights_stop_the_bench_before_solving(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(P.ENV, raising=False)
    (tmp_path / "empty").mkdir()
    argv = BENCH + [a.format(empty=tmp_path / "empty") for a in extra] + ["--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "b").exists()


def test_restore_reports_lpips_when_given_weights(weights, tmp_path, capsys, digits):
    save_image(tmp_path / "d.png", digits[0])
    argv = ["restore", str(tmp_path / "d.png"), "--task", "sr4", "--method", "dps", "--steps", "3", "--json"]
    assert main(argv + ["--out", str(tmp_path / "o"), "--metric-weights", str(weights), "--metrics", "lpips-vgg"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < rec["lpips_vgg"] < 1 and "lpips_alex" not in rec
    assert main(argv + ["--out", str(tmp_path / "p"), "--metrics", "fid"]) == 2
    assert "'fid': give metrics from lpips-alex, lpips-vgg" in capsys.readouterr().err and not (tmp_path / "p").exists()
