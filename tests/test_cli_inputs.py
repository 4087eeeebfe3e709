"""What a new user hit: devices that are not there, 16-bit and transparent images, paths
that escape ``--out``, options silently ignored, messages and silent successes."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dmap.cli import main
from dmap.data import load_image, mnist, save_image

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@pytest.fixture()
def digit(tmp_path):
    save_image(tmp_path / "digit.png", mnist("test")[0][0])
    return tmp_path / "digit.png"


def one_line_error(capsys, code: int, message: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("dmap: error:") and message in err, err
    return err


RESTORE = ["restore", "{digit}", "--task", "sr4", "--method", "dps", "--steps", "2", "--out", "{out}"]


@NO_CUDA
@pytest.mark.parametrize(
    "argv",
    [
        RESTORE + ["--device", "cuda"],
        ["sample", "-n", "1", "--out", "{out}/g.png", "--device", "cuda"],
        ["train", "--steps", "1", "--out", "{out}", "--device", "cuda"],
        ["tune", "--task", "sr4", "--method", "dps", "--out", "{out}/p.json", "--device", "cuda"],
        ["bench", "--tasks", "sr4", "--methods", "dps", "--images", "1", "--out", "{out}", "--device", "cuda"],
    ],
)
def test_an_absent_cuda_device_is_one_line_before_any_work(argv, digit, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([a.format(digit=digit, out=out) for a in argv])
    one_line_error(capsys, code, "--device: cuda: no CUDA device")
    assert not out.exists()


@pytest.mark.parametrize(("device", "message"), [("banana", "'banana' is not a device"), ("meta", "runs on cpu, cuda or mps")])
def test_a_device_that_is_not_one_is_named(device, message, digit, tmp_path, capsys):
    argv = [a.format(digit=digit, out=tmp_path / "out") for a in RESTORE] + ["--device", device]
    one_line_error(capsys, main(argv), message)


def test_bench_refuses_more_digits_than_the_split_holds(tmp_path, capsys):
    code = main(["bench", "--tasks", "sr4", "--methods", "dps", "--images", "100000", "--out", str(tmp_path / "b")])
    one_line_error(capsys, code, "--images 100000: the test split holds 501 digits, 100000 asked for")
    assert not (tmp_path / "b").exists()


def test_train_names_stay_inside_out(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    code = main(["train", "--steps", "1", "--name", "../../escape", "--out", str(out)])
    one_line_error(capsys, code, "'../../escape' is not a plain name")
    assert not list(tmp_path.rglob("escape*")) and not out.exists()


def test_written_weights_have_the_permissions_of_any_other_file(tmp_path):
    from dmap.utils import save_safetensors

    save_safetensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)})
    (tmp_path / "w.json").write_text("{}")
    mode = os.stat(tmp_path / "w.safetensors").st_mode & 0o777
    assert mode == os.stat(tmp_path / "w.json").st_mode & 0o777 and mode & 0o044  # (0600 before: unreadable to others)


def test_tune_refuses_an_estimator_for_a_method_without_one(tmp_path, capsys):
    argv = ["tune", "--task", "sr4", "--method", "dmap", "--cse", "x.safetensors", "--out", str(tmp_path / "o" / "p.json")]
    one_line_error(capsys, main(argv), "--cse applies to the cse methods only, not dmap")
    assert not (tmp_path / "o").exists()


def test_a_pickled_kernel_is_named_once_with_the_reason(digit, tmp_path, capsys):
    kernel = tmp_path / "k_obj.npy"
    np.save(kernel, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    argv = [a.format(digit=digit, out=tmp_path / "out") for a in RESTORE]
    argv[argv.index("sr4")] = "deblur-gauss"
    err = one_line_error(capsys, main(argv + ["--kernel", str(kernel)]), f"--kernel {kernel}: not a readable .npy array")
    assert err.count(str(kernel)) == 1 and "Python objects (a pickle)" in err
    (tmp_path / "text.npy").write_text("hello")
    one_line_error(capsys, main(argv + ["--kernel", str(tmp_path / "text.npy")]), "not a .npy file")


def test_16_bit_grey_keeps_its_levels(tmp_path):
    levels = np.array([[0, 16384, 32768, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_image(tmp_path / "g16.png")
    torch.testing.assert_close(x, torch.tensor([[[-1.0, 16384 / 32767.5 - 1, 32768 / 32767.5 - 1, 1.0]]]))


def test_float_images_are_intensities_in_unit_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32)).save(tmp_path / "f.tif")
    torch.testing.assert_close(load_image(tmp_path / "f.tif"), torch.tensor([[[-1.0, -0.5, 1.0]]]))
    Image.fromarray(np.array([[0.0, 300.0]], np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        load_image(tmp_path / "big.tif")


def test_transparency_is_composited_onto_black_and_said(tmp_path):
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = [255, 51]  # opaque, 20 % opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    notes = []
    x = load_image(tmp_path / "a.png", notes)
    expected = torch.tensor([200 / 255, 200 / 255 * 0.2]) * 2 - 1
    torch.testing.assert_close(x[:, 0], expected.expand(3, 2))
    assert notes == [f"{tmp_path / 'a.png'}: 50% of the pixels are transparent: composited onto black"]
    rgba[..., 3] = 255  # fully opaque: nothing to say
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    notes = []
    assert load_image(tmp_path / "b.png", notes).shape == (3, 1, 2) and notes == []


def test_palette_images_read_as_their_colours(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1])
    im.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    torch.testing.assert_close(x[:, 0], torch.tensor([[1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]]))


def test_restore_says_what_it_wrote_and_its_psnr(digit, tmp_path, capsys):
    argv = [a.format(digit=digit, out=tmp_path / "out") for a in RESTORE]
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert (
        line.startswith(f"{digit}: PSNR ")
        and " dB, SSIM " in line
        and line.endswith(f"wrote {tmp_path / 'out' / 'digit_restored.png'}")
    )


def test_tune_says_its_choice_in_words(tmp_path, capsys):
    out = tmp_path / "p.json"
    argv = ["tune", "--prior", "gmm-mnist", "--task", "sr4", "--method", "dps", "--images", "1", "--nfe", "3,6"]
    assert main(argv + ["--around", "gmm-mnist", "--out", str(out)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    (chosen,) = json.loads(out.read_text())["presets"]["gmm-mnist"]["sr4"]["dps"]
    assert (
        line.startswith(f"chose step size {chosen['step_size']:g}: ")
        and " dB mean PSNR on 1 train images at 3,6 evaluations" in line
    )
    assert "; best step size by number of steps: 3 -> " in line and line.endswith(f"; wrote {out}")


def test_solve_runs_at_one_thread_and_restores_the_setting():
    import dmap
    from dmap.rng import sample_generators, seeded

    prior = dmap.load_prior("gmm-mnist")
    task = dmap.make_task("sr4", prior.image_shape, generator=seeded(0))
    y = task.simulate(mnist("test")[0][:1], generator=sample_generators(1, 1))
    before, seen = torch.get_num_threads(), []
    dmap.solve("dps", prior, task, y, steps=2, callback=lambda info: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    dmap.solve("dps", prior, task, y, steps=1, threads=None, callback=lambda info: seen.append(torch.get_num_threads()))
    assert seen[-1] == before
