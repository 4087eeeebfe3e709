import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dmap.data
from dmap.bench import Bench, BenchConfig, BenchError, parse_method, read_store, run_bench, split_specs
from dmap.cli import main

CONFIG = BenchConfig(
    "gmm-mnist", ("sr4", "inpaint-box"), ("dps", "dmap[inner_steps=2,step_size=0.3]"), images=5, nfe=(12, 24), batch_size=2
)
ARGV = [
    "bench",
    "--prior",
    "gmm-mnist",
    "--tasks",
    "sr4",
    "--methods",
    "dps,dsg",
    "--images",
    "6",
    "--nfe",
    "40",
    "--batch-size",
    "1",
    "--threads",
    "1",
]


def by_key(rows):
    return {(r["task"], r["method"], r["nfe_budget"], r["image"]): r for r in rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted single-worker run of CONFIG."""
    out = tmp_path_factory.mktemp("bench") / "ref"
    summary = run_bench(CONFIG, out, show_progress=False)
    return out, summary


def test_report_files_agree_with_the_store(reference):
    out, summary = reference
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 * 5 and len(by_key(rows)) == len(rows)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert len(summary) == 8
    for cell in summary:
        sel = [
            r["psnr"]
            for r in rows
            if (r["task"], r["method"], r["nfe_budget"]) == (cell["task"], cell["method"], cell["nfe_budget"])
        ]
        assert cell["n_images"] == 5 and cell["psnr_mean"] == pytest.approx(np.mean(sel), abs=1e-12)
        assert cell["psnr_se"] == pytest.approx(np.std(sel, ddof=1) / np.sqrt(5), abs=1e-12)
        for key in ("prior", "nfe", "ssim_mean", "seconds_per_image", "peak_mem_mb"):
            assert key in cell
    dmap_cell = next(c for c in summary if c["method"] == "dmap[inner_steps=2,step_size=0.3]" and c["nfe_budget"] == 24)
    assert dmap_cell["nfe"] == 22  # 8 steps + 7 x 2 inner steps fit in 24
    table = list(csv.DictReader((out / "summary.csv").open()))
    assert len(table) == 8 and float(table[0]["psnr_mean"]) == pytest.approx(summary[0]["psnr_mean"])
    md = (out / "summary.md").read_text()
    assert f"{summary[0]['psnr_mean']:.2f} ± {summary[0]['psnr_se']:.2f}" in md
    for name in ("psnr.png", "psnr_vs_nfe_sr4.png", "grid_sr4.png", "grid_inpaint-box.png", "manifest.json"):
        assert (out / name).stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image_ids"] == dmap.data.mnist_spread(5)[1].tolist()
    assert {"dmap", "torch"} <= set(manifest["versions"]) and len(manifest["prior"]["fingerprint"]) == 16
    assert all("step_size" in c["options"] and "steps" in c["options"] for c in manifest["cells"])


@pytest.mark.slow
def test_two_workers_give_the_same_results_as_one(tmp_path):
    """DPS on sr4 at 100 evaluations is chaotic (a last-bit difference grows to dBs), so
    equal hashes mean equal arithmetic; before the fix, 2 workers ran 1 thread each
    and 1 worker 2 threads, and PSNRs differed by 0.2-0.3 dB."""
    config = BenchConfig("gmm-mnist", ("sr4",), ("dps",), images=4, nfe=(100,), batch_size=2)
    run_bench(config, tmp_path / "one", show_progress=False)
    run_bench(config, tmp_path / "two", workers=2, show_progress=False)
    one, two = by_key(read_store(tmp_path / "one")), by_key(read_store(tmp_path / "two"))
    assert one.keys() == two.keys() and len(one) == 4
    for key in one:
        assert (one[key]["output_sha"], one[key]["psnr"]) == (two[key]["output_sha"], two[key]["psnr"])
    assert not list((tmp_path / "two").glob("results-r*.jsonl"))  # merged by rank 0


# kills its own process (SIGKILL) in the middle of the 4th append, as a crash would
KILLER = textwrap.dedent("""
    import os, signal, sys
    import dmap.bench.runner as runner
    from dmap.cli import main
    real, calls = runner.append_rows, []

    def append_then_die(path, rows):
        calls.append(1)
        if len(calls) < 4:
            return real(path, rows)
        with path.open("a") as f:  # half a line, as a kill in the middle of a write leaves
            f.write('{"task": "sr4", "method": "dps", "nfe_bu')
        os.kill(os.getpid(), signal.SIGKILL)

    runner.append_rows = append_then_die
    sys.exit(main(sys.argv[1:]))
""")


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER] + ARGV + ["--out", str(out)], capture_output=True)
    assert proc.returncode == -9
    shard = (out / "results-r0.jsonl").read_text()
    assert shard.count("\n") == 3 and not shard.endswith("\n") and not (out / "summary.json").exists()
    assert main(ARGV + ["--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and len(by_key(rows)) == 12
    assert main(ARGV + ["--out", str(tmp_path / "whole")]) == 0
    whole = by_key(read_store(tmp_path / "whole"))
    assert {k: r["output_sha"] for k, r in by_key(rows).items()} == {k: r["output_sha"] for k, r in whole.items()}


def test_mismatched_rerun_is_refused(reference, tmp_path, capsys):
    out, _ = reference
    before = (out / "results.jsonl").read_text()
    argv = [
        "bench",
        "--prior",
        "gmm-mnist",
        "--tasks",
        "sr4,inpaint-box",
        "--methods",
        "dps,dmap[inner_steps=2,step_size=0.3]",
        "--images",
        "6",
        "--nfe",
        "12,24",
        "--batch-size",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings" in err and "image_ids" in err
    assert (out / "results.jsonl").read_text() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "sr5", "--methods", "dps"], "unknown task"),
        (["--tasks", "sr4", "--methods", "dps,no-such-method"], "unknown method"),
        (["--tasks", "sr4", "--methods", "dps[steps=3]"], "steps follow from the budget"),
        (["--tasks", "sr4", "--methods", "dps[step_size]"], "not key=value"),
        (["--tasks", "sr4", "--methods", "dps[cse=x.safetensors]"], "takes no conditional score estimator"),
        (["--tasks", "sr4", "--methods", "dps[frob=1]"], "unknown setting(s) frob"),
        (["--tasks", "sr4", "--methods", "dps", "--nfe", "10,x"], "integers"),
        (["--tasks", "sr4", "--methods", "dps,dps"], "listed twice"),
        (["--tasks", "phase-retrieval", "--methods", "cse"], "linear task"),
    ],
)
def test_bad_bench_input_exits_2_and_writes_nothing(argv, message, tmp_path, capsys):
    assert main(["bench", "--prior", "gmm-mnist", "--images", "2", "--out", str(tmp_path / "o")] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_method_specs():
    assert split_specs("dps,dmap[step_size=2,inner_steps=5],dps+cse[guide=cse]") == [
        "dps",
        "dmap[step_size=2,inner_steps=5]",
        "dps+cse[guide=cse]",
    ]
    assert parse_method("dmap[step_size=2,inner_steps=5]") == ("dmap", {"step_size": 2, "inner_steps": 5}, None)
    assert parse_method("dps+cse[guide=cse,cse=a.safetensors]") == ("dps+cse", {"guide": "cse"}, "a.safetensors")
    with pytest.raises(BenchError, match="one pair of brackets"):
        parse_method("dmap[step_size=2")


def test_tune_reads_train_digits_only_and_writes_a_preset_file(tmp_path, capsys, monkeypatch):
    splits = []
    original = dmap.data.mnist

    def spy(split="train"):
        splits.append(split)
        return original(split)

    monkeypatch.setattr(dmap.data, "mnist", spy)
    presets = tmp_path / "presets.json"
    argv = [
        "tune",
        "--prior",
        "gmm-mnist",
        "--task",
        "sr4",
        "--method",
        "dmap",
        "--images",
        "2",
        "--nfe",
        "9",
        "--out",
        str(presets),
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert splits and set(splits) == {"train"}
    best = max(result["trials"], key=lambda t: t["psnr"])
    written = json.loads(presets.read_text())
    assert written["presets"]["gmm-mnist"]["sr4"]["dmap"] == [{"noise": "noisy", **result["chosen"]}]
    assert result["chosen"]["step_size"] == best["step_size"] and result["chosen"]["inner_steps"] == best["inner_steps"]
    assert (
        "dmap tune --prior gmm-mnist --task sr4 --method dmap"
        in written["notes"][f"gmm-mnist/sr4/dmap/noisy/inner_steps={result['chosen']['inner_steps']}"]
    )
    # bench picks the preset file up
    out = tmp_path / "b"
    assert (
        main(
            [
                "bench",
                "--prior",
                "gmm-mnist",
                "--tasks",
                "sr4",
                "--methods",
                "dmap",
                "--images",
                "1",
                "--nfe",
                "9",
                "--presets",
                str(presets),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cell = json.loads((out / "manifest.json").read_text())["cells"][0]
    assert cell["options"]["step_size"] == result["chosen"]["step_size"]


def test_equal_steps_gives_every_method_the_steps_and_records_what_it_spent(tmp_path):
    """The paper's protocol: the same steps for every method, DMAP with K = 3 unless its spec
    sets K; NFE = steps (K + 1) - K for DMAP; noiseless measurements accepted."""
    methods = ("dps[step_size=0.01]", "dmap[step_size=0.01]", "dmap[step_size=0.01,inner_steps=2]", "dsg")
    config = BenchConfig("gmm-mnist", ("sr4",), methods, images=2, nfe=(10,), sigma_y=0.0, protocol="equal-steps")
    summary = {c["method"]: c for c in run_bench(config, tmp_path / "b", show_progress=False)}
    assert [(c["steps"], c["nfe"]) for c in summary.values()] == [(10, 10), (10, 10 * 4 - 3), (10, 10 * 3 - 2), (10, 10)]
    assert all(np.isfinite(c["psnr_mean"]) for c in summary.values())
    assert "| steps | NFE |" in (tmp_path / "b" / "summary.md").read_text()
    assert "protocol equal-steps" in (tmp_path / "b" / "summary.md").read_text()


def test_each_row_names_its_budget_beside_the_steps_a_capped_preset_ran(tmp_path):
    """A preset that caps 20 evaluations at 10 steps runs 10 there, and the summary's row
    says which budget it stands for."""
    entry = {"noise": "noisy", "step_size": 1.0, "by_steps": {"10": 1.0, "20": [1.0, 10]}}
    presets = tmp_path / "p.json"
    presets.write_text(json.dumps({"format": 3, "presets": {"gmm-mnist": {"sr4": {"dps": [entry]}}}}))
    config = BenchConfig("gmm-mnist", ("sr4",), ("dps",), images=2, nfe=(10, 20), presets=str(presets))
    summary = run_bench(config, tmp_path / "b", show_progress=False)
    assert [(c["nfe_budget"], c["steps"], c["nfe"]) for c in summary] == [(10, 10, 10), (20, 10, 10)]
    assert summary[0]["psnr_per_image"] == summary[1]["psnr_per_image"]
    table = (tmp_path / "b" / "summary.md").read_text()
    assert "| sr4 | dps | 10 | 10 | 10 |" in table and "| sr4 | dps | 20 | 10 | 10 |" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--protocol", "equal-steps"], "needs --steps"),
        (["--protocol", "equal-steps", "--steps", "10", "--nfe", "10"], "--nfe does not apply"),
        (["--steps", "10"], "--steps does not apply"),
        (["--nfe", "10,10"], "none twice"),
    ],
)
def test_bad_protocol_budgets_exit_2(argv, message, tmp_path, capsys):
    base = ["bench", "--prior", "gmm-mnist", "--tasks", "sr4", "--methods", "dps", "--out", str(tmp_path / "b")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "b").exists()


def test_an_image_that_diverges_is_recorded_and_the_rest_of_its_batch_kept(tmp_path):
    """dps at step size 11 and 12 evaluations diverges on one of these four images: its batch
    is solved again image by image, the diverged image gets NaN and the reason, the others
    the scores a one-image batch gives, and the run goes on."""
    spec = "dps[step_size=11]"
    summary = run_bench(
        BenchConfig("gmm-mnist", ("sr4",), (spec,), images=4, nfe=(12,), batch_size=2), tmp_path / "b2", show_progress=False
    )
    alone = run_bench(
        BenchConfig("gmm-mnist", ("sr4",), (spec,), images=4, nfe=(12,), batch_size=1), tmp_path / "b1", show_progress=False
    )
    (cell,) = summary
    psnr = np.array(cell["psnr_per_image"])
    assert cell["diverged"] == 1 and np.isnan(psnr).sum() == 1 and np.isnan(cell["psnr_mean"])
    np.testing.assert_array_equal(psnr, np.array(alone[0]["psnr_per_image"]))
    rows = read_store(tmp_path / "b2")
    (bad,) = [r for r in rows if "diverged" in r]
    assert "diverged" in bad["diverged"] and "step size" in bad["diverged"]
    assert "diverged on 1/4" in (tmp_path / "b2" / "summary.md").read_text()


def test_refresh_solves_again_only_the_cells_whose_settings_changed(reference, tmp_path):
    """A preset file with another DPS step size on sr4 and a new method: --refresh solves
    dps on sr4 again and dsg anew, keeps every other row as it was, and records which
    cells an older dmap solved."""
    import dataclasses
    import shutil

    from dmap.presets import resolve_options, write_preset

    src, _ = reference
    out = tmp_path / "bench"
    shutil.copytree(src, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "versions": {**manifest["versions"], "dmap": "0.0.1"}}))
    presets = tmp_path / "presets.json"
    write_preset(presets, "gmm-mnist", "sr4", "dps", resolve_options("dps", "gmm-mnist", "sr4", step_size=0.05), "test")
    config = dataclasses.replace(CONFIG, methods=(*CONFIG.methods, "dsg"), presets=str(presets))
    with pytest.raises(BenchError, match="holds a benchmark with other settings"):
        run_bench(config, out, show_progress=False)
    run_bench(config, out, show_progress=False, refresh=True)
    old, new = by_key(read_store(src)), by_key(read_store(out))
    assert len(new) == 3 * 2 * 2 * 5 and set(old) < set(new)
    for key, row in old.items():
        task, method = key[:2]
        changed = (task, method) == ("sr4", "dps")
        assert (new[key]["output_sha"] != row["output_sha"]) == changed, key
    (history,) = json.loads((out / "manifest.json").read_text())["history"]  # who solved the kept cells
    assert history["versions"]["dmap"] == "0.0.1" and len(history["cells"]) == 6 and "sr4 dps @12" not in history["cells"]
    assert run_bench(config, out, show_progress=False)  # a plain rerun resumes it
    (out / "manifest.json").write_text(json.dumps(manifest))  # the old manifest restored over the new rows
    with pytest.raises(BenchError, match="holds rows of 2 cells solved with other settings; --refresh redoes them"):
        run_bench(CONFIG, out, show_progress=False)
    assert Bench(CONFIG, out).refresh() == ["sr4 dps @12", "sr4 dps @24"]  # the rows', not the manifest's, settings
    run_bench(CONFIG, out, show_progress=False)
    assert {k: r["output_sha"] for k, r in by_key(read_store(out)).items() if k in old} == {
        k: r["output_sha"] for k, r in old.items()
    }
    with pytest.raises(BenchError, match=r"other image_ids, config.images; --refresh renews cells only"):
        run_bench(dataclasses.replace(config, images=4), out, show_progress=False, refresh=True)


def test_rows_from_before_the_cell_fingerprint_are_judged_by_the_manifest(reference, tmp_path):
    """A folder whose rows carry no ``cell`` (written by an older dmap): its manifest decides,
    so a rerun keeps every row and --refresh has nothing to solve."""
    import shutil

    src, _ = reference
    out = tmp_path / "bench"
    shutil.copytree(src, out)
    rows = read_store(out)
    (out / "results.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "cell"}) + "\n" for r in rows))
    assert Bench(CONFIG, out).refresh() == []
    run_bench(CONFIG, out, show_progress=False)
    assert [r["output_sha"] for r in read_store(out)] == [r["output_sha"] for r in rows]


def test_several_samples_per_image_report_the_psnr_of_their_mean(tmp_path):
    """--samples 3: each row's PSNR is the mean over the image's samples, ``psnr_of_mean`` that
    of their mean (at least the worst sample's, by Jensen), and sample 0 is the one a
    single-sample run solves."""
    one = BenchConfig("gmm-mnist", ("sr4",), ("dps",), images=3, nfe=(10,), batch_size=3)
    run_bench(one, tmp_path / "one", show_progress=False)
    summary = run_bench(one.replace(samples=3), tmp_path / "three", show_progress=False)
    rows = read_store(tmp_path / "three")
    assert len(rows) == 3 and all(r["psnr_of_mean"] > r["psnr"] - 3 for r in rows)
    assert summary[0]["psnr_of_mean_mean"] == pytest.approx(np.mean([r["psnr_of_mean"] for r in rows]))
    assert summary[0]["psnr_of_mean_mean"] > summary[0]["psnr_mean"]  # averaging samples of a posterior helps
    first = [np.load(p) for p in (tmp_path / d / "outputs" / "sr4" / "dps@10.npy" for d in ("one", "three"))]
    np.testing.assert_array_equal(first[0], first[1])
    assert "their mean" in (tmp_path / "three" / "summary.md").read_text()


def test_draws_repeat_each_image_under_new_operators_noise_and_seeds(reference, tmp_path):
    """Draw 0 is the single-draw benchmark, bit for bit; other draws differ; the statistics
    count images (each averaged over its draws), not rows."""
    import dataclasses

    config = dataclasses.replace(CONFIG, draws=3)
    summary = run_bench(config, tmp_path / "d")
    rows = read_store(tmp_path / "d")
    assert len(rows) == config.expected_rows() == 3 * CONFIG.expected_rows()
    single = by_key(read_store(reference[0]))
    draw0 = {(r["task"], r["method"], r["nfe_budget"], r["image"]): r for r in rows if r["draw"] == 0}
    assert {k: r["output_sha"] for k, r in draw0.items()} == {k: r["output_sha"] for k, r in single.items()}
    for key in list(draw0)[:4]:
        shas = {r["output_sha"] for r in rows if (r["task"], r["method"], r["nfe_budget"], r["image"]) == key}
        assert len(shas) == 3  # three draws, three restorations
    cell = summary[0]
    assert cell["n_images"] == 5 and cell["draws"] == 3 and cell["psnr_draw_sd"] > 0
    mine = [r for r in rows if (r["task"], r["method"], r["nfe_budget"]) == (cell["task"], cell["method"], cell["nfe_budget"])]
    means = [np.mean([r["psnr"] for r in mine if r["index"] == i]) for i in range(5)]
    assert cell["psnr_per_image"] == pytest.approx(means)
    assert cell["psnr_se"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(5))
    assert run_bench(config, tmp_path / "d") == summary  # resumed: nothing to solve, the same report


def test_paired_differences_give_a_bootstrap_interval_and_the_median():
    from dmap.bench.report import paired

    d = paired([1.0, 2.0, 3.0, 10.0], [0.0, 0.0, 0.0, 0.0])
    assert d["mean"] == 4.0 and d["median"] == 2.5 and d["se"] == pytest.approx(np.std([1, 2, 3, 10], ddof=1) / 2)
    lo, hi = d["ci95"]
    assert 1.0 <= lo < 4.0 < hi <= 10.0
    assert paired([1.0, 2.0, 3.0, 10.0], [0.0] * 4) == d  # seeded: the same interval every time
