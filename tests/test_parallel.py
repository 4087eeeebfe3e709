"""Data-parallel training under torchrun (two CPU processes, gloo): the model trained by
two processes on halves of each batch is the one a single process trains on the whole
batch (the non-EMA weights of the last checkpoint, their distance relative to how far
training moved them, under 1e-3; without the gradient all-reduce it is 0.7-1.0, checked by hand)."""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dmap"]
SINGLE = [sys.executable, "-m", "dmap"]
CASES = {  # arguments ({}: the output folder), checkpoints compared
    "prior": ("train --steps 3 --batch-size 8 --channels 8 --out {}", ["/checkpoint.pt"]),
    "latent": (
        "train --latent --ae-steps 2 --steps 2 --batch-size 4 --out {}",
        ["/vae.run/checkpoint.pt", "/unet.run/checkpoint.pt"],
    ),
    "cse": ("train-cse --prior mnist --task sr4 --images 8 --steps 3 --batch-size 4 --out {}.safetensors", [".run/checkpoint.pt"]),
}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_train_the_model_one_process_trains(case, tmp_path):
    args, checkpoints = CASES[case]
    for name, launcher in (("one", SINGLE), ("two", TORCHRUN)):
        done = run(launcher + args.format(tmp_path / name).split())
        assert done.returncode == 0, done.stderr[-2000:]
    for ckpt in checkpoints:
        one, two = (torch.load(f"{tmp_path / name}{ckpt}") for name in ("one", "two"))
        flat = {key: torch.cat([v.reshape(-1) for v in c[key].values()]) for c, key in ((one, "model"), (one, "ema"))}
        moved = (flat["model"] - flat["ema"]).norm()  # the EMA is still ~ the initial weights
        gap = (torch.cat([v.reshape(-1) for v in two["model"].values()]) - flat["model"]).norm()
        assert gap < 1e-3 * moved, f"{ckpt}: {gap / moved}"
    logs = [(tmp_path / f"{name}{'.run' if case == 'cse' else ''}").glob("**/loss.csv") for name in ("one", "two")]
    for a, b in zip(*(sorted(g) for g in logs), strict=True):
        la, lb = ([float(r.split(",")[1]) for r in p.read_text().splitlines()[1:]] for p in (a, b))
        assert la == pytest.approx(lb, abs=2e-6)


@pytest.mark.slow
def test_a_batch_that_does_not_split_between_the_processes_is_refused(tmp_path):
    done = run(TORCHRUN + ["train", "--steps", "1", "--batch-size", "5", "--channels", "8", "--out", str(tmp_path / "x")])
    assert done.returncode != 0
    assert "--batch-size 5 must be a multiple of the 2 torchrun processes" in done.stderr
    assert not (tmp_path / "x").exists()
