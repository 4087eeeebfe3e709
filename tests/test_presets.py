"""Presets keyed by noise regime and K, the budget as a cap, and the per-budget choice of tuning."""

import dataclasses
import json
import math

import pytest

from dmap.bench import BenchConfig, BenchError, run_bench
from dmap.presets import PresetError, at_steps, load_presets, merge, resolve_options, select, strength_at, write_preset
from dmap.solvers import METHODS
from dmap.tune import budget_table, falls, per_budget

DMAP = METHODS["dmap"].options


def table(*entries):
    """A preset table with these DMAP entries for mnist/sr4."""
    return {"mnist": {"sr4": {"dmap": [dict(e) for e in entries]}}}


K1 = {"noise": "noisy", "inner_steps": 1, "step_size": 0.2}
K3 = {"noise": "noisy", "inner_steps": 3, "step_size": 0.6}
K3_QUIET = {"noise": "noiseless", "inner_steps": 3, "step_size": 2.0}


def test_a_run_takes_the_entry_of_its_noise_regime_and_its_k():
    t = table(K1, K3, K3_QUIET)
    # K free: the first entry of the regime
    assert resolve_options("dmap", "mnist", "sr4", presets=t, sigma_y=0.05).step_size == 0.2
    assert resolve_options("dmap", "mnist", "sr4", presets=t, sigma_y=0.05, inner_steps=3).step_size == 0.6
    assert resolve_options("dmap", "mnist", "sr4", presets=t, sigma_y=0.0).step_size == 2.0
    assert select(t, "mnist", "sr4", "dmap", sigma_y=0.0)[1] == "noiseless, inner_steps=3"
    # a regime without an entry takes the other's, and says so
    only_noisy = table(K3)
    assert resolve_options("dmap", "mnist", "sr4", presets=only_noisy, sigma_y=0.0).step_size == 0.6
    assert select(only_noisy, "mnist", "sr4", "dmap", sigma_y=0.0)[1] == "noisy (none for noiseless), inner_steps=3"
    assert select(only_noisy, "mnist", "sr4", "dps")[1] is None  # no preset: the defaults


def test_a_fixed_k_without_its_preset_is_refused_unless_the_strength_is_given():
    t = table(K1)
    with pytest.raises(PresetError, match=r"no noisy preset for dmap with inner_steps=3 on mnist/sr4 \(tuned at inner_steps=1\)"):
        resolve_options("dmap", "mnist", "sr4", presets=t, inner_steps=3)
    opts = resolve_options("dmap", "mnist", "sr4", presets=t, inner_steps=3, step_size=0.5)
    assert (opts.inner_steps, opts.step_size) == (3, 0.5)
    # the cse method starts from dmap's entry: the same rule
    with pytest.raises(PresetError, match="inner_steps=3"):
        resolve_options("dmap+cse", "mnist", "sr4", presets=t, inner_steps=3)


def test_equal_steps_dmap_gets_the_preset_tuned_at_the_papers_k_or_nothing(tmp_path):
    """The paper's protocol fixes K = 3: a preset tuned at another K is refused, one at
    K = 3 is used (and the manifest says which entry each cell took)."""
    presets = tmp_path / "p.json"
    presets.write_text(json.dumps({"format": 3, "presets": {"gmm-mnist": {"sr8": {"dmap": [K1 | {"steps": 20}]}}}}))
    config = BenchConfig("gmm-mnist", ("sr8",), ("dmap",), images=2, nfe=(6,), protocol="equal-steps", presets=str(presets))
    with pytest.raises(BenchError, match=r"dmap: no noisy preset for dmap with inner_steps=3 on gmm-mnist/sr8"):
        run_bench(config, tmp_path / "a")
    presets.write_text(json.dumps({"format": 3, "presets": {"gmm-mnist": {"sr8": {"dmap": [K1, K3]}}}}))
    run_bench(config, tmp_path / "b")
    cell = json.loads((tmp_path / "b" / "manifest.json").read_text())["cells"][0]
    assert (cell["options"]["inner_steps"], cell["options"]["step_size"], cell["preset"]) == (3, 0.6, "noisy, inner_steps=3")
    # noiseless measurements with only a noisy preset: used, and the summary says so
    (summary,) = run_bench(dataclasses.replace(config, sigma_y=0.0), tmp_path / "c")
    assert summary["preset"] == "noisy (none for noiseless), inner_steps=3"
    assert "dmap: presets of the other noise regime" in (tmp_path / "c" / "summary.md").read_text()


def test_the_papers_protocol_finds_a_dmap_preset_at_its_k_on_every_retuned_prior():
    """gmm-mnist and mnist are retuned by dmap 0.7's protocol (DMAP at K = 3); mnist-latent's
    presets predate it (K = 1, 2, 3, 5 by task), and the paper's protocol is refused there
    where K differs, naming it, until they are retuned."""
    for prior, tasks in load_presets().items():
        for task, methods in tasks.items():
            for method in ("dmap", "dmap+cse"):
                for noise in {e.get("noise", "noisy") for e in methods.get("dmap", [])}:
                    sigma_y = 0.05 if noise == "noisy" else 0.0
                    paper = METHODS[method].options.paper_protocol
                    if prior == "mnist-latent" and all(e.get("inner_steps") != 3 for e in methods["dmap"]):
                        with pytest.raises(PresetError, match=f"inner_steps=3 on {prior}/{task}"):
                            resolve_options(method, prior, task, sigma_y=sigma_y, **paper)
                        continue
                    assert resolve_options(method, prior, task, sigma_y=sigma_y, **paper).inner_steps == 3, (prior, task)


def test_written_entries_replace_their_key_and_a_free_k_comes_first(tmp_path):
    path = tmp_path / "p.json"
    write_preset(path, "mnist", "sr4", "dmap", DMAP(inner_steps=3, step_size=0.6), "k3", default=False)
    write_preset(path, "mnist", "sr4", "dmap", DMAP(inner_steps=1, step_size=0.2), "free")
    write_preset(path, "mnist", "sr4", "dmap", DMAP(inner_steps=3, step_size=2.0), "quiet", sigma_y=0.0, default=False)
    write_preset(path, "mnist", "sr4", "dmap", DMAP(inner_steps=3, step_size=0.7), "k3 again", default=False)
    data = json.loads(path.read_text())
    entries = data["presets"]["mnist"]["sr4"]["dmap"]
    assert [(e["noise"], e["inner_steps"], e["step_size"]) for e in entries] == [
        ("noisy", 1, 0.2),
        ("noisy", 3, 0.7),
        ("noiseless", 3, 2.0),
    ]
    assert sorted(data["notes"]) == [
        "mnist/sr4/dmap/noiseless/inner_steps=3",
        "mnist/sr4/dmap/noisy/inner_steps=1",
        "mnist/sr4/dmap/noisy/inner_steps=3",
    ]
    # over the shipped presets, a file's entries replace those of their key only
    shipped = load_presets()["mnist"]["sr4"]["dps"]
    methods = {"dps": list(shipped)}
    merge(methods, "dps", {"noise": "noiseless", "step_size": 9.0}, default=True)
    noisy = [e for e in methods["dps"] if e.get("noise", "noisy") == "noisy"]
    assert noisy == [e for e in shipped if e.get("noise", "noisy") == "noisy"] and noisy
    assert [e["step_size"] for e in methods["dps"] if e.get("noise") == "noiseless"] == [9.0]
    assert resolve_options("dmap", "mnist", "sr4", presets=load_presets(path), sigma_y=0.05).step_size == 0.2


def test_format_2_files_read_as_one_noisy_entry(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": 2, "presets": {"mnist": {"sr4": {"dmap": {"step_size": 0.4, "inner_steps": 5}}}}}))
    noisy = [e for e in load_presets(old)["mnist"]["sr4"]["dmap"] if e["noise"] == "noisy"]
    assert noisy[0] == {"noise": "noisy", "step_size": 0.4, "inner_steps": 5}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 3, "presets": {"mnist": {"sr4": {"dps": [{"noise": "loud"}]}}}}))
    with pytest.raises(PresetError, match="noise must be one of noisy, noiseless"):
        load_presets(bad)
    bad.write_text(json.dumps({"format": 3, "presets": {"mnist": {"sr4": {"dps": {"step_size": 0.3}}}}}))
    with pytest.raises(PresetError, match="a list of entries"):
        load_presets(bad)
    bad.write_text(json.dumps({"format": 3, "presets": {"mnist": {"sr4": {"dps": [{"by_steps": {"100": [0.3, 200]}}]}}}}))
    with pytest.raises(PresetError, match="by_steps"):
        load_presets(bad)


def test_a_budget_is_a_cap_where_fewer_steps_did_better():
    by_steps = {"20": 0.1, "50": 0.3, "250": 0.9, "1000": [0.9, 250]}
    # below and between the entries: the steps the budget gives, the strength interpolated in log-log
    assert at_steps(by_steps, 10) == (10, 0.05)
    assert at_steps(by_steps, 50) == (50, 0.3)
    assert at_steps(by_steps, 100) == (100, pytest.approx(0.3 * 3 ** (math.log(2) / math.log(5)), rel=1e-2))
    # past a cap: the capped entry's steps, never more
    assert at_steps(by_steps, 500) == (250, 0.9) and at_steps(by_steps, 5000) == (250, 0.9)
    assert strength_at(by_steps, 1000) == 0.9  # (equal steps: the steps are the protocol's)
    t = {"mnist": {"sr4": {"dps": [{"noise": "noisy", "step_size": 0.3, "by_steps": by_steps}]}}}
    opts = resolve_options("dps", "mnist", "sr4", presets=t, nfe=1000)
    assert (opts.steps, opts.step_size, opts.nfe()) == (250, 0.9, 250)
    assert resolve_options("dps", "mnist", "sr4", presets=t, steps=1000).steps == 1000


def trial(value, *per_budget_images):
    """A tuning trial of ``step_size=value`` with these PSNR per image at each budget."""
    means = [sum(p) / len(p) for p in per_budget_images]
    return {
        "step_size": value,
        "psnr": sum(means) / len(means),
        "psnr_per_budget": means,
        "psnr_per_image": list(per_budget_images),
    }


def test_each_budget_keeps_the_joint_best_unless_another_beats_it_beyond_the_paired_se():
    joint = trial(1.0, [10, 10, 10, 10], [20, 20, 20, 20])
    noisy = trial(0.3, [13, 7, 13, 8], [15, 15, 15, 15])  # +0.25 dB at budget 0, paired SE 1.5
    clear = trial(3.0, [9, 9, 9, 8.6], [21, 21.2, 20.8, 21])  # +1 dB at budget 1, paired SE 0.08
    assert [t["step_size"] for t in per_budget([joint, noisy, clear])] == [1.0, 3.0]


def test_the_budget_table_caps_a_budget_that_scored_below_a_smaller_one():
    a = trial(0.3, [18, 18, 18, 18], [20, 20, 20, 20], [19, 19, 19, 19.4])  # falls by 0.9 at the last budget
    b = trial(0.9, [17, 17, 17, 17], [19.5, 19.6, 19.4, 19.5], [19.2, 19.3, 19.1, 19.2])
    assert budget_table([a, b], "step_size", [20, 50, 250]) == {20: 0.3, 50: 0.3, 250: [0.3, 50]}
    # a fall within the paired standard error is not a cap
    c = trial(0.3, [18, 18, 18, 18], [20, 20, 20, 20], [21, 19.5, 20.5, 18.6])
    assert budget_table([c], "step_size", [20, 50, 250]) == {20: 0.3, 50: 0.3, 250: 0.3}


def test_falls_serves_a_fallen_or_failed_budget_by_the_last_one_standing():
    a = [20.0, 21.0, 22.0, 23.0]
    up = [v + 1 for v in a]
    down = [v - 0.5 for v in a]  # 0.5 dB under `up`, paired SE 0: fallen
    within = [v + d for v, d in zip(up, [0.3, -0.3, 0.3, -0.5])]  # -0.05 dB, paired SE 0.2: not fallen
    failed = [float("-inf")] * 4
    assert falls([a, up, down, within, failed]) == [0, 1, 1, 3, 3]
    assert falls([a, up, down, within, failed], allowance=0.0) == [0, 1, 1, 1, 1]  # any fall: within too
