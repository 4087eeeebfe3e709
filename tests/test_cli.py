import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dmap
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
    assert any(line.startswith("prior   adm-ffhq256=FILE") for line in out)
    assert sum(line.startswith("task ") for line in out) == len(dmap.TASKS) == 12
    assert {line.split()[1] for line in out if line.startswith("method")} == {
        "dps",
        "dsg",
        "dmap",
        "cse",
        "dps+cse",
        "dmap+cse",
        "ddrm",
        "diffpir",
        "pigdm",
        "daps",
        "reddiff",
        "tds",
        "mcgdiff",
    }


def test_restore_writes_images_figure_and_json(digits, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "restore",
            str(digits),
            "--task",
            "sr4",
            "--method",
            "dmap",
            "--steps",
            "8",
            "--samples",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    rec = records[0]
    for key in ("input", "task", "method", "prior", "steps", "nfe", "sigma_y", "seed", "psnr", "ssim", "seconds", "output"):
        assert key in rec
    assert rec["steps"] == 8 and rec["nfe"] == 8 + 7 * rec["options"]["inner_steps"] and rec["sigma_y"] == 0.05
    assert len(rec["psnr_samples"]) == 2 and rec["psnr"] == pytest.approx(np.mean(rec["psnr_samples"]), abs=1e-3)
    # the reported PSNR is that of the written image (up to its 8-bit rounding) against the input
    from dmap.metrics import psnr

    for k in range(2):
        written = psnr(load_image(out / f"digit0_restored_{k}.png")[None], load_image(digits / "digit0.png")[None])
        assert float(written) == pytest.approx(rec["psnr_samples"][k], abs=0.05)
    names = sorted(p.name for p in out.iterdir())
    parts = ("restored_0.png", "restored_1.png", "measurement.png", "figure.png", "mean.png", "std.png", "summary.npz")
    assert names == sorted(f"digit{i}_{s}" for i in (0, 500) for s in parts)
    # the posterior summary of the two samples: their mean and std, the 90 % interval between them
    summary = np.load(out / "digit0_summary.npz")
    samples = np.stack([load_image(out / f"digit0_restored_{k}.png").numpy() for k in range(2)])
    np.testing.assert_allclose(summary["mean"], samples.mean(0), atol=1 / 255)
    np.testing.assert_allclose(summary["std"], samples.std(0, ddof=1), atol=2 / 255)
    assert (summary["lower"] <= summary["mean"]).all() and (summary["mean"] <= summary["upper"]).all()
    assert rec["psnr_of_mean"] >= min(rec["psnr_samples"]) - 1e-3 and rec["summary"].endswith("digit0_summary.npz")
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
    code = main(
        [
            "restore",
            str(small),
            "--task",
            "sr4",
            "--method",
            "dps",
            "--steps",
            "5",
            "--observed",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    assert code == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["psnr"] is None and load_image(rec["output"]).shape == (1, 32, 32)


def test_resize(tmp_path, capsys):
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    assert main(["restore", str(tmp_path / "rgb.png"), "--task", "sr4", "--method", "dps", "--out", str(tmp_path / "o")]) == 2
    assert "expects 1 x 32 x 32" in capsys.readouterr().err
    assert (
        main(
            [
                "restore",
                str(tmp_path / "rgb.png"),
                "--task",
                "sr4",
                "--method",
                "dps",
                "--steps",
                "3",
                "--resize",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )


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
    (["restore", "{digit}", "--task", "sr4", "--method", "no-such-method"], "unknown method"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--prior", "ffhq"], "unknown prior"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--steps", "0"], "steps"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--nfe", "0"], "--nfe"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--nfe", "100", "--steps", "10"], "not both"),
    # (DDRM has no preset whose cap could run fewer steps than the budget gives)
    (["restore", "{digit}", "--task", "sr4", "--method", "ddrm", "--nfe", "5000"], "steps must be in [1, 1000]"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--option", "guidance=linear"], "guidance must be one of"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--sigma-y", "-0.1"], "sigma-y"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--step-size", "nan"], "finite"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--step-size", "inf"], "finite"),
    (["restore", "{digit}", "--task", "inpaint-box", "--method", "dps", "--observed"], "--observed"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--inner-steps", "2"], "unknown setting(s) inner_steps"),
    (
        ["restore", "{digit}", "--task", "sr4", "--method", "dmap", "--inner-steps", "2"],
        "no noisy preset for dmap with inner_steps=2",
    ),
    (
        ["tune", "--task", "sr4", "--method", "dmap", "--option", "inner_steps=0", "--out", "{missing}.json"],
        "--option: inner steps",
    ),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--cse", "{missing}"], "cse methods only"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--presets", "{missing}"], "no such preset file"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps", "--presets", "{notimage}"], "not a preset file"),
    (["restore", "{digit}", "--task", "phase-retrieval", "--method", "dps+cse"], "linear task"),
    (["restore", "{digit}", "--task", "phase-retrieval", "--method", "diffpir"], "diffpir needs a linear task"),
    (["restore", "{digit}", "--task", "deblur-gauss", "--method", "dmap+cse"], "no shipped conditional score"),
    (["restore", "{digit}", "--task", "sr4", "--method", "cse", "--cse", "{missing}"], "no such file"),
    (["restore", "{digit}", "--task", "sr4", "--method", "dps+cse", "--guide", "both"], "invalid choice"),
    (["train-cse", "--task", "phase-retrieval", "--out", "{missing}.safetensors"], "linear task"),
    (["train-cse", "--task", "sr4", "--out", "{notimage}"], ".safetensors"),
    (["train-cse", "--task", "sr4", "--prior", "gmm-mnist", "--out", "{missing}.safetensors"], "has no dmap UNet"),
    (["restore", "{digit}", "--method", "dps"], "--task"),
    (["demo", "--images", "0"], "--images"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_exits_2_with_one_line(argv, message, digits, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimage.png").write_text("hello")
    paths = {
        "missing": tmp_path / "nope.png",
        "notimage": tmp_path / "notimage.png",
        "empty": tmp_path / "empty",
        "digit": digits / "digit0.png",
    }
    argv = [a.format(**paths) for a in argv] + ["--out", str(tmp_path / "out")] * (argv[0] == "restore")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dmap: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_console_script_has_no_traceback(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmap",
            "restore",
            str(tmp_path / "x.png"),
            "--task",
            "sr4",
            "--method",
            "dps",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such file" in r.stderr


def test_sample_writes_grid_and_npz(tmp_path, capsys):
    assert main(["sample", "-n", "6", "--steps", "5", "--out", str(tmp_path / "g.png"), "--npz", str(tmp_path / "s.npz")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 33 + 1, 2 * 33 + 1)
    s = np.load(tmp_path / "s.npz")["samples"]
    assert s.shape == (6, 1, 32, 32) and s.min() >= -1 and s.max() <= 1
    assert main(["sample", "-n", "0", "--out", str(tmp_path / "h.png")]) == 2


def test_train_cse_then_restore_with_it(digits, tmp_path, capsys):
    adapter = tmp_path / "a.safetensors"
    assert main(["train-cse", "--task", "sr4", "--images", "4", "--steps", "3", "--batch-size", "4", "--out", str(adapter)]) == 0
    meta = json.loads(adapter.with_suffix(".json").read_text())
    assert meta["task"] == "sr4" and meta["images"]["n"] == 4 and len(meta["images"]["indices"]) == 4
    assert (tmp_path / "a.run" / "loss.csv").exists()
    capsys.readouterr()
    code = main(
        [
            "restore",
            str(digits / "digit0.png"),
            "--task",
            "sr4",
            "--method",
            "dps+cse",
            "--cse",
            str(adapter),
            "--steps",
            "4",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    rec = json.loads(capsys.readouterr().out)
    assert code == 0 and rec["nfe"] == 8 and rec["options"]["guide"] == "prior"
    assert rec["psnr"] == pytest.approx(rec["psnr_samples"][0], abs=1e-4)
    code = main(
        [
            "restore",
            str(digits / "digit0.png"),
            "--task",
            "cs2",
            "--method",
            "dps+cse",
            "--cse",
            str(adapter),
            "--steps",
            "4",
            "--out",
            str(tmp_path / "p"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "trained for task 'sr4', not 'cs2'" in err and not (tmp_path / "p").exists()


def test_an_unwritable_output_folder_is_refused_before_any_work(digits, monkeypatch, capsys):
    import dmap

    def no_work(*a, **k):
        raise AssertionError("solved before checking the output folder")

    monkeypatch.setattr(dmap, "run_method", no_work)
    argv = ["restore", str(digits / "digit0.png"), "--task", "sr4", "--method", "dmap", "--out", "/proc/dmap-x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc/dmap-x: cannot create the folder" in err


def test_a_diverged_run_exits_1_and_writes_nothing(digits, tmp_path, capsys):
    argv = [
        "restore",
        str(digits / "digit0.png"),
        "--task",
        "sr4",
        "--method",
        "dps",
        "--steps",
        "20",
        "--step-size",
        "1e6",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged at step" in err and "step size 1e+06" in err
    assert not (tmp_path / "o").exists()


def test_help_documents_exit_codes_and_every_command_takes_threads():
    from dmap.cli import build_parser

    parser = build_parser()
    assert "exit codes: 0 success; 1 the solve failed" in parser.format_help()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    for name, p in sub.choices.items():
        if name != "list":
            assert "--threads" in p.format_help(), name
            assert "exit codes" in p.format_help(), name


def test_threads_are_set_from_the_flag(digits, tmp_path, monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    argv = ["sample", "-n", "1", "--steps", "2", "--out", str(tmp_path / "g.png")]
    assert main(argv + ["--threads", "2"]) == 0 and seen == [2]
    assert main(argv) == 0 and seen == [2, 1]  # default: one thread (measured; see THREADS_HELP)


def test_resize_says_what_it_converted(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)).save(photo)
    argv = ["restore", str(photo), "--task", "sr4", "--method", "dps", "--steps", "3", "--out", str(tmp_path / "o")]
    assert main(argv) == 2 and "pass --resize" in capsys.readouterr().err
    assert main(argv + ["--resize"]) in (0, 1)
    err = capsys.readouterr().err
    assert "photo.png: converted (colour to grey, resized 48 x 64 to 32 x 32) for prior mnist" in err


def test_demo_prints_each_row_as_its_task_finishes(monkeypatch, tmp_path, capsys):
    import dmap

    real, printed = dmap.run_method, []

    def spy(*a, **k):
        printed.append(capsys.readouterr().out.count("\n"))
        return real(*a, **k)

    monkeypatch.setattr(dmap, "run_method", spy)
    assert main(["demo", "--images", "1", "--nfe", "3", "--out", str(tmp_path)]) == 0
    # two header lines before the first solve; then each task's row lands before the next task's first solve
    assert printed[0] == 2 and printed[2::2] == [1, 1, 1, 1]
    assert (tmp_path / "demo.png").exists()


def test_ctrl_c_propagates_from_main_and_exits_130_from_the_console_script(monkeypatch):
    import dmap.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.restore, "cmd_list", interrupted)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_list(parser(), interrupted))
    with pytest.raises(KeyboardInterrupt):
        main(["list"])
    monkeypatch.setattr(sys, "argv", ["dmap", "list"])
    with pytest.raises(SystemExit) as e:
        cli.run()
    assert e.value.code == 130


def _with_list(parser, func):
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    sub.choices["list"].set_defaults(func=func)
    return parser


def test_one_restoration_is_labelled_by_its_method(digits, tmp_path, monkeypatch):
    import dmap.figures

    labels = []
    real = dmap.figures.grid
    monkeypatch.setattr(dmap.figures, "grid", lambda rows, path, **k: (labels.append(k["col_labels"]), real(rows, path, **k)))
    argv = ["restore", str(digits / "digit0.png"), "--task", "sr4", "--method", "dmap", "--steps", "3"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert main(argv + ["--samples", "2", "--out", str(tmp_path / "b")]) == 0
    assert labels == [["truth", "measurement", "dmap"], ["truth", "measurement", "mean", "std", "dmap #1", "dmap #2"]]
