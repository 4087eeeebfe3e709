import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dmap.cli import main
from dmap.data import load_image, mnist, save_image


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    x, _ = mnist("test")
    for i in (0, 500):
        save_image(d / f"digit{i}.png", x[i])
    return d


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("prior   gmm-mnist") for line in out)
    assert sum(line.startswith("task ") for line in out) == 8
    assert {line.split()[1] for line in out if line.startswith("method")} == {"dps", "dsg", "dmap", "cse", "dps+cse",
                                                                            "dmap+cse"}


def test_restore_writes_images_figure_and_json(digits, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["restore", str(digits), "--task", "sr4", "--method", "dmap", "--steps", "8",
                 "--samples", "2", "--seed", "3", "--out", str(out), "--json"])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    rec = records[0]
    for key in ("input", "task", "method", "prior", "steps", "nfe", "sigma_y", "seed", "psnr", "ssim", "seconds", "output"):
        assert key in rec
    assert rec["steps"] == 8 and rec["nfe"] == 8 + 7 * rec["options"]["inner_steps"] and rec["sigma_y"] == 0.05
    assert 5 < rec["psnr"] < 60 and len(rec["psnr_samples"]) == 2
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"digit{i}_{s}.png" for i in (0, 500)
                           for s in ("restored_0", "restored_1", "measurement", "figure"))
    assert load_image(out / "digit0_measurement.png").shape == (1, 32, 32)  # pinv view, upsampled
    # the same command gives the same bits; solved alone, an image differs only by float32 rounding
    again, alone = tmp_path / "again", tmp_path / "alone"
    argv = ["--task", "sr4", "--method", "dmap", "--steps", "8", "--samples", "2", "--seed", "3", "--out"]
    main(["restore", str(digits)] + argv + [str(again)])
    main(["restore", str(digits / "digit500.png")] + argv + [str(alone)])

    def read(path):
        return np.asarray(Image.open(path)).astype(int)

    assert np.array_equal(read(again / "digit500_restored_1.png"), read(out / "digit500_restored_1.png"))
    assert np.abs(read(alone / "digit500_restored_1.png") - read(out / "digit500_restored_1.png")).max() <= 1


def test_restore_observed(digits, tmp_path, capsys):
    small = tmp_path / "small.png"
    save_image(small, load_image(digits / "digit0.png")[:, ::4, ::4])
    code = main(["restore", str(small), "--task", "sr4", "--method", "dps", "--steps", "5", "--observed",
                 "--out", str(tmp_path / "o"), "--json"])
    assert code == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["psnr"] is None and load_image(rec["output"]).shape == (1, 32, 32)


def test_resize(tmp_path, capsys):
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    assert main(["restore", str(tmp_path / "rgb.png"), "--task", "sr4", "--method", "dps",
                 "--out", str(tmp_path / "o")]) == 2
    assert "expects 1 x 32 x 32" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "rgb.png"), "--task", "sr4", "--method", "dps", "--steps", "3",
                 "--resize", "--out", str(tmp_path / "o")]) == 0


def test_demo_runs_small(tmp_path, capsys):
    assert main(["demo", "--images", "2", "--nfe", "12", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "inpaint-box" in out and "cs2" in out
    assert Image.open(tmp_path / "demo.png").size[1] > 20 * 48


BAD = [
    (["restore", "{missing}", "--task", "sr4", "--method", "dps"], "no such file"),
    (["restore", "{notimage}", "--task", "sr4", "--method", "dps"], "not a readable image"),
    (["restore", "{empty}", "--task", "sr4", "--method", "dps"], "holds no image"),
    (["restore", "{digit}", "--task", "sr5", "--method", "dps"], "unknown task"),
    (["restore", "{digit}", "--task", "sr4", "--method", "ddrm"], "unknown method"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--prior", "ffhq"], "unknown prior"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--steps", "0"], "steps"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--sigma-y", "-0.1"], "sigma-y"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--step-size", "nan"], "finite"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--step-size", "inf"], "finite"),
    (["restore", "{digit}", "--task", "inpaint-box", "--method", "dps", "--observed"], "--observed"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--inner-steps", "2"], "unknown setting(s) inner_steps"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--cse", "{missing}"], "cse methods only"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--presets", "{missing}"], "no such preset file"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--presets", "{notimage}"], "not a preset file"),
    (["restore", "{digit}", "--task", "phase-retrieval", "--method", "dps+cse"], "linear task"),
    (["restore", "{digit}", "--task", "deblur-gauss", "--method", "dmap+cse"], "no shipped conditional score"),
    (["restore", "{digit}", "--task", "sr4", "--method", "cse", "--cse", "{missing}"], "no such file"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps+cse", "--guide", "both"], "invalid choice"),
    (["train-cse", "--task", "phase-retrieval", "--out", "{missing}.safetensors"], "linear task"),
    (["train-cse", "--task", "sr4", "--out", "{notimage}"], ".safetensors"),
    (["train-cse", "--task", "sr4", "--prior", "gmm-mnist", "--out", "{missing}.safetensors"], "no network"),
    (["restore", "{digit}", "--method", "dps"], "--task"),
    (["demo", "--images", "0"], "--images"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_exits_2_with_one_line(argv, message, digits, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimage.png").write_text("hello")
    paths = {"missing": tmp_path / "nope.png", "notimage": tmp_path / "notimage.png", "empty": tmp_path / "empty",
             "digit": digits / "digit0.png"}
    argv = [a.format(**paths) for a in argv] + ["--out", str(tmp_path / "out")] * (argv[0] == "restore")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dmap: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_console_script_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dmap", "restore", str(tmp_path / "x.png"), "--task", "sr4",
                        "--method", "dps", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such file" in r.stderr


def test_sample_writes_grid_and_npz(tmp_path, capsys):
    assert main(["sample", "-n", "6", "--steps", "5", "--out", str(tmp_path / "g.png"), "--npz", str(tmp_path / "s.npz")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 33 + 1, 2 * 33 + 1)
    s = np.load(tmp_path / "s.npz")["samples"]
    assert s.shape == (6, 1, 32, 32) and s.min() >= -1 and s.max() <= 1
    assert main(["sample", "-n", "0", "--out", str(tmp_path / "h.png")]) == 2


def test_train_cse_then_restore_with_it(digits, tmp_path, capsys):
    adapter = tmp_path / "a.safetensors"
    assert main(["train-cse", "--task", "sr4", "--images", "4", "--steps", "3", "--batch-size", "4",
                 "--out", str(adapter)]) == 0
    meta = json.loads(adapter.with_suffix(".json").read_text())
    assert meta["task"] == "sr4" and meta["images"]["n"] == 4 and len(meta["images"]["indices"]) == 4
    assert (tmp_path / "a.run" / "loss.csv").exists()
    capsys.readouterr()
    code = main(["restore", str(digits / "digit0.png"), "--task", "sr4", "--method", "dps+cse", "--cse", str(adapter),
                 "--steps", "4", "--out", str(tmp_path / "o"), "--json"])
    rec = json.loads(capsys.readouterr().out)
    assert code == 0 and rec["nfe"] == 8 and rec["options"]["guide"] == "prior" and 0 < rec["psnr"] < 60
    code = main(["restore", str(digits / "digit0.png"), "--task", "cs2", "--method", "dps+cse", "--cse", str(adapter),
                 "--steps", "4", "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and "trained for task 'sr4', not 'cs2'" in err and not (tmp_path / "p").exists()
