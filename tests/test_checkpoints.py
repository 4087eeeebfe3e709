"""Published checkpoints: the ADM (guided-diffusion) UNet and diffusers folders, tested on
models built here (random weights at reduced width, full size on the meta device)."""

import json
from pathlib import Path

import pytest
import torch

import dmap
from dmap.api import unsuited
from dmap.cli import main
from dmap.priors.adm import ADM_CONFIGS, ADMConfig, adm_unet, load_adm_prior
from dmap.priors.checkpoint import read_state_dict
from dmap.rng import sample_generators, seeded
from dmap.utils import WeightsError

# a reduced ADM with every feature of the published ones: learned sigma, scale-shift norm,
# residual up/down-sampling, attention with head channels (legacy order)
TINY = {
    "image_size": 64,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "learn_sigma": "True",
    "attention_resolutions": "16",
    "num_heads": 4,
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "use_fp16": False,
    "timestep_respacing": "",
}


@pytest.mark.parametrize("name, params, tensors", [("adm-ffhq256", 93.6e6, 362), ("adm-imagenet256", 552.8e6, 566)])
def test_full_size_configurations_have_the_published_sizes(name, params, tensors):
    with torch.device("meta"):
        net = adm_unet(name)
    assert len(net.state_dict()) == tensors
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(params, abs=0.05e6)
    assert "input_blocks.1.0.in_layers.2.weight" in net.state_dict() and "out.2.weight" in net.state_dict()


def tiny_net(seed: int = 0):
    torch.manual_seed(seed)  # the output layers of a fresh net are not zero here: every weight random
    net = adm_unet(TINY)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A reduced ADM saved as guided-diffusion saves it, with its flags in a JSON file."""
    folder = tmp_path_factory.mktemp("adm")
    net = tiny_net()
    torch.save(net.state_dict(), folder / "model.pt")
    (folder / "flags.json").write_text(json.dumps(TINY))
    return folder, net


def test_flags_read_as_the_scripts_read_them():
    cfg = ADMConfig.from_flags(TINY)
    assert cfg.learn_sigma is True and cfg.attention_resolutions == (16,) and cfg.channel_mult == (1.0, 2.0)
    assert ADMConfig.from_flags({"image_size": "256"}).mult == (1, 1, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="unknown setting.*num_chanels"):
        ADMConfig.from_flags({"num_chanels": 64})
    with pytest.raises(ValueError, match="class-conditional"):
        ADMConfig.from_flags({"class_cond": "True"})
    s = ADM_CONFIGS["adm-ffhq256"].schedule()
    assert s.T == 1000 and float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)


def test_a_saved_adm_reloads_strictly_to_identical_eps(tiny):
    folder, net = tiny
    prior = dmap.load_prior(f"adm={folder / 'flags.json'}={folder / 'model.pt'}")
    assert prior.shape == (3, 64, 64) and prior.name == "flags"
    x = torch.randn(2, 3, 64, 64, generator=seeded(1))
    t = torch.tensor([5, 800])
    with torch.no_grad():
        assert torch.equal(prior.eps(x, t), net(x, t)[:, :3])  # eps: the first 3 of the 6 channels


@pytest.mark.parametrize("wrap", ["ema", "net", "state_dict", "module", "safetensors"])
def test_every_accepted_wrapper_loads(tiny, tmp_path, wrap):
    folder, net = tiny
    state = net.state_dict()
    path = tmp_path / ("m.safetensors" if wrap == "safetensors" else "m.pt")
    if wrap == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif wrap == "module":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        torch.save({wrap: state, "step": torch.tensor(3)}, path)
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    load_adm_prior(path, TINY)


def test_a_file_of_another_configuration_is_refused_in_one_line(tiny, tmp_path, capsys):
    folder, _ = tiny
    with pytest.raises(WeightsError) as e:
        load_adm_prior(folder / "model.pt", {**TINY, "num_channels": 64})
    msg = str(e.value)
    assert "\n" not in msg and "does not fit the ADM configuration from flags" in msg and "mis-shaped" in msg
    with pytest.raises(WeightsError, match="does not fit the ADM configuration adm-ffhq256: .* missing"):
        load_adm_prior(folder / "model.pt", "adm-ffhq256")
    # from the CLI: exit 2, one line, nothing written
    (tmp_path / "d").mkdir()
    img = tmp_path / "d" / "x.png"
    dmap.data.save_image(img, torch.zeros(3, 64, 64))
    argv = [
        "restore",
        str(img),
        "--task",
        "sr4",
        "--method",
        "dps",
        "--prior",
        f"adm-ffhq256={folder / 'model.pt'}",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "adm-ffhq256" in err and not (tmp_path / "o").exists()


def test_a_pickle_holding_a_python_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"net": ADMConfig()}, path)  # a dataclass: code would run to rebuild it
    with pytest.raises(WeightsError, match="will not unpickle code"):
        read_state_dict(path)


@pytest.mark.parametrize("method", ["dps", "dmap"])
def test_dps_and_dmap_restore_colour_64px_and_batch_equals_loop(tiny, tmp_path, method):
    """On the tiny ADM read as an x0-predicting model (predict_xstart): a random eps
    network's reverse process leaves the data range (the solvers refuse it), a random
    x0 network's stays near zero."""
    folder, _ = tiny
    (tmp_path / "flags.json").write_text(json.dumps({**TINY, "predict_xstart": "True"}))
    prior = dmap.load_prior(f"adm={tmp_path / 'flags.json'}={folder / 'model.pt'}")
    assert prior.prediction == "sample"
    task = dmap.make_task("inpaint-box", prior.shape, generator=seeded(0))
    x = torch.rand(2, 3, 64, 64, generator=seeded(2)) * 2 - 1
    y = task.simulate(x, generator=sample_generators(1, 2))
    opts = {"steps": 4, "step_size": 0.01} | ({"inner_steps": 1} if method == "dmap" else {})
    batch = dmap.solve(method, prior, task, y, generator=sample_generators(3, 2), **opts)
    single = torch.cat(
        [dmap.solve(method, prior, task, y[i : i + 1], generator=sample_generators(3, 1, i), **opts) for i in range(2)]
    )
    assert batch.shape == (2, 3, 64, 64)
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-4)


def test_bfloat16_runs_the_network_under_autocast(tiny):
    folder, _ = tiny
    spec = f"adm={folder / 'flags.json'}={folder / 'model.pt'}"
    full, half = dmap.load_prior(spec), dmap.load_prior(spec, dtype="bfloat16")
    x = torch.randn(1, 3, 64, 64, generator=seeded(4))
    with torch.no_grad():
        a, b = full.eps(x, 500), half.eps(x, 500)
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max())


def test_gradient_checkpointing_gives_the_same_gradient(tiny):
    folder, net = tiny
    ck = adm_unet({**TINY, "use_checkpoint": True})
    ck.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=seeded(5))
    grads = []
    for model in (net, ck.eval()):
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xx, torch.tensor([300])).square().sum(), xx)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1])


def diffusers_folder(path, prediction="epsilon", schedule="linear"):
    """A tiny random UNet2DModel and DDPM scheduler saved as a diffusers pipeline folder."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    unet.save_pretrained(path / "unet")
    DDPMScheduler(beta_schedule=schedule, prediction_type=prediction).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    return unet.eval()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_a_diffusers_folder_loads_and_its_eps_is_the_models_own(tmp_path, prediction):
    unet = diffusers_folder(tmp_path, prediction, "squaredcos_cap_v2" if prediction == "v_prediction" else "linear")
    prior = dmap.load_prior(str(tmp_path))
    assert prior.shape == (3, 32, 32) and prior.prediction == prediction
    x = torch.randn(2, 3, 32, 32, generator=seeded(6))
    t = torch.tensor([3, 600])
    with torch.no_grad():
        out = unet(x, t).sample
        eps = prior.eps(x, t)
    ab = prior.schedule.alpha_bar[t].reshape(-1, 1, 1, 1).float()
    expected = {
        "epsilon": out,
        "v_prediction": ab.sqrt() * out + (1 - ab).sqrt() * x,
        "sample": (x - ab.sqrt() * out) / (1 - ab).sqrt(),
    }[prediction]
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)
    if prediction == "v_prediction":
        assert prior.schedule.config.kind == "cosine"


def test_restore_and_bench_run_on_a_diffusers_folder(tmp_path, capsys):
    diffusers_folder(tmp_path / "model", prediction="sample")  # a random x0 model stays in range
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        dmap.data.save_image(images / f"{i}.png", torch.rand(3, 32, 32, generator=seeded(i)) * 2 - 1)
    common = ["--prior", str(tmp_path / "model"), "--threads", "1"]
    argv = [
        "restore",
        str(images / "0.png"),
        "--task",
        "sr4",
        "--method",
        "dps",
        "--steps",
        "3",
        "--step-size",
        "0.01",
        "--out",
        str(tmp_path / "r"),
        "--json",
    ]
    assert main(argv + common) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["prior"] == str(tmp_path / "model") and (tmp_path / "r" / "0_restored.png").exists()
    argv = [
        "bench",
        "--tasks",
        "sr4",
        "--methods",
        "dps[step_size=0.01]",
        "--images",
        "2",
        "--nfe",
        "3",
        "--data",
        str(images),
        "--out",
        str(tmp_path / "b"),
    ]
    assert main(argv + common) == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    files = [Path(f["path"]).name for f in manifest["image_files"]["files"]]  # the first --images of the folder
    assert files == ["0.png", "1.png"] and manifest["config"]["data"] == str(images)
    # the bundled digits do not fit a colour 32 px prior: refused before any work
    assert main(argv[:-4] + ["--out", str(tmp_path / "c")] + common) == 2
    assert "give --data FOLDER" in capsys.readouterr().err


@pytest.mark.slow
def test_every_task_and_method_runs_on_colour_images(tiny, tmp_path):
    """Colour 3 x 64 x 64 images through every task and every method that applies to it,
    on the tiny ADM read as an x0 predictor (two steps each: this checks shapes, dtypes and
    devices end to end, not quality)."""
    folder, _ = tiny
    (tmp_path / "flags.json").write_text(json.dumps({**TINY, "predict_xstart": "True"}))
    prior = dmap.load_prior(f"adm={tmp_path / 'flags.json'}={folder / 'model.pt'}")
    x = torch.rand(2, 3, 64, 64, generator=seeded(9)) * 1.6 - 0.8
    ran = 0
    for name in dmap.TASKS:
        task = dmap.make_task(name, prior.shape, generator=seeded(0))
        y = task.simulate(x, generator=sample_generators(1, 2))
        for method, m in dmap.METHODS.items():
            if m.uses_cse or unsuited(method, task):
                continue
            strength = {
                k: v
                for k, v in {"step_size": 0.01, "guidance_rate": 0.05, "lam": 1.0}.items()
                if k in {f for f in m.options.__dataclass_fields__}
            }
            out = dmap.solve(method, prior, task, y, steps=2, generator=sample_generators(2, 2), **strength)
            assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all(), (name, method)
            ran += 1
    assert ran >= 40
