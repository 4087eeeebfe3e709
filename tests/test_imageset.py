"""Benchmarking your own images: folders, lists and the bundled photographs, fitted to the
prior; duplicates and unreadable files refused; a folder benchmark resumes and reproduces."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dmap.imageset as imageset
from dmap.cli import main
from dmap.imageset import fit, image_paths, image_set

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def folder(tmp_path):
    """Five small colour and grey images of different sizes and depths."""
    d = tmp_path / "imgs"
    d.mkdir()
    g = np.random.default_rng(0)
    Image.fromarray(g.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(d / "c.png")
    Image.fromarray(g.integers(0, 256, (32, 32), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(g.integers(0, 65536, (48, 48), dtype=np.uint16)).save(d / "b16.png")
    Image.fromarray(g.integers(0, 256, (36, 36, 3), dtype=np.uint8)).convert("P").save(d / "d.png")
    Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "e.jpg")
    return d


def test_a_folder_is_sorted_by_name_and_n_takes_the_first(folder):
    first3 = image_set(folder, 3, (1, 32, 32))
    assert [Path(f).name for f in first3.files] == ["a.png", "b16.png", "c.png"]
    assert first3.ids.tolist() == [0, 1, 2] and first3.x.shape == (3, 1, 32, 32)
    five = image_set(folder, 5, (1, 32, 32))
    assert torch.equal(five.x[:3], first3.x) and five.hashes[:3] == first3.hashes  # a larger set extends a smaller one
    assert any("colour converted to luma" in n for n in five.notes) and any("resized to 32 x 32" in n for n in five.notes)
    with pytest.raises(ValueError, match="holds 5 images, 6 asked for"):
        image_set(folder, 6, (1, 32, 32))


def test_a_text_file_lists_images_relative_to_itself_in_its_order(folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# my test set\nimgs/e.jpg\n\nimgs/a.png  # grey\n")
    assert [p.name for p in image_paths(listing)] == ["e.jpg", "a.png"]
    assert image_set(listing, 2, (3, 32, 32)).x.shape == (2, 3, 32, 32)
    listing.write_text("imgs/nothing.png\n")
    with pytest.raises(FileNotFoundError, match=r"nothing.png: no such file \(listed in"):
        image_paths(listing)


def test_fitting_converts_channels_and_crops_the_centre():
    red = torch.full((3, 4, 4), -1.0)
    red[0] = 1.0
    luma, done = fit(red, 1, 4)
    assert torch.allclose(luma, torch.full((1, 4, 4), 0.299 * 2 - 1)) and done == ["colour converted to luma (BT.601)"]
    grey = torch.linspace(-1, 1, 16).reshape(1, 4, 4)
    assert torch.equal(fit(grey, 3, 4)[0], grey.expand(3, 4, 4))
    wide = torch.full((1, 8, 24), -1.0)
    wide[:, :, 8:16] = 1.0  # the centre square is white, the sides black
    square, done = fit(wide, 1, 4)
    assert torch.allclose(square, torch.ones(1, 4, 4)) and "centre-cropped" in done[0]


def test_duplicate_and_unreadable_files_are_refused_by_name(folder):
    (folder / "f.png").write_bytes((folder / "a.png").read_bytes())
    with pytest.raises(ValueError, match=r"f.png: the same image as .*a.png"):
        image_set(folder, 6, (1, 32, 32))
    (folder / "aa.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="aa.png: not a readable image"):
        image_set(folder, 2, (1, 32, 32))


def test_photos_are_the_wheels_photographs_or_a_one_line_hint(monkeypatch):
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    photos = image_set("photos", 7, (3, 64, 64))
    assert [Path(f).name for f in photos.files] == [
        "astronaut.png",
        "camera.png",
        "chelsea.png",
        "china.jpg",
        "coffee.png",
        "flower.jpg",
        "rocket.jpg",
    ]
    assert photos.files[0] == "photos/astronaut.png" and photos.x.std() > 0.2
    monkeypatch.setattr(imageset.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs pip install 'dmap\[photos\]'"):
        image_paths("photos")


BENCH = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "dps", "--nfe", "4", "--batch-size", "2"]


def test_a_folder_benchmark_records_its_files_resumes_and_refuses_changed_images(folder, tmp_path, capsys):
    out = tmp_path / "b"
    argv = BENCH + ["--data", str(folder), "--images", "3", "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    files = manifest["image_files"]["files"]
    assert [Path(f["path"]).name for f in files] == ["a.png", "b16.png", "c.png"] and all(len(f["sha256"]) == 16 for f in files)
    assert "centre crop" in manifest["image_files"]["preprocess"]
    rows = (out / "results.jsonl").read_text()
    assert main(argv) == 0 and (out / "results.jsonl").read_text() == rows  # resumed: nothing solved again
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "a.png")
    capsys.readouterr()
    assert main(argv) == 2
    assert "holds a benchmark with other settings (image_files differ)" in capsys.readouterr().err


def test_a_bad_data_source_stops_the_bench_with_one_line(tmp_path, capsys):
    assert main(BENCH + ["--data", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none: no such file or directory" in err and not (tmp_path / "b").exists()


def test_the_small_reproduction_recipe_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/reproduce.md's small version, command by command, in a fresh folder."""
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    text = (ROOT / "docs" / "reproduce.md").read_text()
    block = text.split("<!-- small version: tested -->")[1].split("```bash")[1].split("```")[0]
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert commands and all(c[0] == "dmap" for c in commands)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert main(argv[1:]) == 0, argv
    summary = json.loads((tmp_path / "runs" / "photos" / "summary.json").read_text())
    assert {c["task"] for c in summary} == {"inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2"}
    assert all(c["n_images"] == 7 and np.isfinite(c["psnr_mean"]) for c in summary)
