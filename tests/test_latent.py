"""Latent priors: a tiny random Stable Diffusion folder (UNet2DConditionModel, AutoencoderKL,
scheduler, empty-prompt embedding) built here, nothing downloaded."""

from pathlib import Path

import pytest
import torch

import dmap
from dmap.operators.physics import Physics
from dmap.priors.latent import LatentPrior
from dmap.rng import sample_generators, seeded
from dmap.utils import WeightsError, save_safetensors

diffusers = pytest.importorskip("diffusers")

WIDTH = 32  # cross-attention width of the tiny UNet


def tiny_sd(folder, seed=0, width=WIDTH):
    """A Stable Diffusion layout: 3 x 16 x 16 images, 4 x 8 x 8 latents."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=width,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    # v-prediction (as SD 2's 768 px model): with random weights (v ~ 0) x0_hat = sqrt(ab) z_t - sqrt(1 - ab) v stays
    # bounded at every t, where a random eps-prediction would put x0_hat at ~ 1 / sqrt(ab) (x 15 at t = 999)
    sched = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction"}
    diffusers.DDPMScheduler(**sched).save_pretrained(folder / "scheduler")
    save_safetensors(folder / "prompt_embedding.safetensors", {"embedding": torch.randn(1, 7, width)})
    return folder


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    folder = tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
    return folder, dmap.load_prior(f"sd={folder}")


def test_a_stable_diffusion_folder_loads_as_a_latent_prior(sd):
    folder, prior = sd
    assert isinstance(prior, LatentPrior) and prior.latent and prior.name == "tiny-sd"
    assert prior.shape == (4, 8, 8) and prior.image_shape == (3, 16, 16)
    assert prior.scaling_factor == pytest.approx(0.18215) and prior.inner.prediction == "v_prediction"
    z = torch.randn(2, 4, 8, 8)
    assert prior.eps(z, 500).shape == z.shape and prior.decode(z).shape == (2, 3, 16, 16)
    assert prior.encode(torch.zeros(2, 3, 16, 16)).shape == z.shape
    assert dmap.load_prior(str(folder)).fingerprint() == prior.fingerprint()  # the plain FOLDER form too


def test_samples_of_a_latent_prior_are_decoded_images(sd, tmp_path, capsys):
    from dmap.cli import main
    from dmap.solvers.sample import sample_prior

    folder, prior = sd
    last = {}
    x = sample_prior(prior, 3, steps=4, generator=sample_generators(0, 3), callback=last.update)
    assert last["x"].shape == (3, 4, 8, 8) and x.shape == (3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(x, prior.decode(last["x"]).clamp(-1, 1))
    assert main(["sample", "--prior", f"sd={folder}", "-n", "2", "--steps", "3", "--out", str(tmp_path / "g.png")]) == 0


@pytest.mark.parametrize("method", ["dps", "dsg", "dmap", "daps", "reddiff", "tds"])
def test_methods_for_any_operator_restore_images_and_batch_equals_loop(sd, method):
    _, prior = sd
    task = dmap.make_task("sr4", prior.image_shape, sigma_y=0.05, generator=seeded(0))
    x = torch.rand(3, *prior.image_shape, generator=seeded(1)) * 2 - 1
    y = task.simulate(x, generator=sample_generators(2, 3))
    extra = {"daps": {"langevin_steps": 3}, "tds": {"particles": 3}}.get(method, {})  # (fewer passes through the decoder)
    options = dmap.resolve_options(method, prior.name, "sr4", steps=4, **extra)  # no presets for tiny-sd: the defaults
    batch = dmap.api.run_method(method, prior, task, y, options, generator=sample_generators(3, 3))
    assert batch.shape == (3, 3, 16, 16) and batch.abs().max() <= 1
    loop = torch.cat(
        [
            dmap.api.run_method(method, prior, task, y[i : i + 1], options, generator=sample_generators(3, 3)[i : i + 1])
            for i in range(3)
        ]
    )
    torch.testing.assert_close(batch, loop, rtol=1e-3, atol=1e-4)  # float32 sums of batched attention and convs


def test_the_likelihood_gradient_reaches_z_through_the_decoder(sd, tmp_path):
    """``grad_z ||y - A(D(z))||^2`` is nonzero and changes with the decoder's weights."""
    _, prior = sd
    task = dmap.make_task("sr4", prior.image_shape, generator=seeded(0))
    y = torch.zeros(1, *task.operator.y_shape)
    z = torch.randn(1, *prior.shape, generator=seeded(4))

    def grad(p):
        zz = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(
            (y - Physics(task.operator, torch.zeros(1), decoder=p.decode).measure(zz, clamp=False)).pow(2).sum(), zz
        )
        return g

    g = grad(prior)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    other = dmap.load_prior(f"sd={tiny_sd(tmp_path / 'other', seed=1)}")
    other.inner.load_state_dict(prior.inner.state_dict())  # same UNet, another decoder
    assert not torch.allclose(grad(other), g)


@pytest.mark.parametrize("method", ["ddrm", "pigdm", "diffpir", "mcgdiff"])
def test_methods_that_need_a_linear_operator_are_refused(sd, method):
    _, prior = sd
    task = dmap.make_task("sr4", prior.image_shape, generator=seeded(0))
    reason = dmap.api.unsuited(method, task, prior=prior)
    assert reason and "latent prior tiny-sd" in reason


def test_a_missing_or_malformed_prompt_embedding_is_named(sd, tmp_path):
    folder, _ = sd
    with pytest.raises(WeightsError, match="no prompt embedding; make it with `dmap sd-embed"):
        dmap.load_prior(f"sd={folder}", prompt_embedding=tmp_path / "none.safetensors")
    save_safetensors(tmp_path / "wide.safetensors", {"embedding": torch.zeros(1, 7, WIDTH + 1)})
    with pytest.raises(WeightsError, match=r"expected an 'embedding' of shape \[1, L, 32\], got shape \(1, 7, 33\)"):
        dmap.load_prior(f"sd={folder}", prompt_embedding=tmp_path / "wide.safetensors")


def test_a_trained_latent_prior_is_a_diffusers_folder_both_libraries_load(tmp_path):
    """`dmap train --latent` at a few steps: the folder loads with diffusers'
    from_pretrained and with dmap.load_prior, its scaling gives unit-variance latents, and a
    ControlNet estimator can be built on it (as on Stable Diffusion)."""
    from dmap.data import mnist
    from dmap.train_latent import train_latent_prior

    data = mnist("train")[0][:32]
    small = {"ae_config": {"block_out_channels": [16, 16, 16]}, "unet_config": {"block_out_channels": [16, 32]}}
    out = train_latent_prior(data, tmp_path / "tiny-latent", ae_steps=3, steps=3, batch_size=4, checkpoint_every=2, **small)
    vae = diffusers.AutoencoderKL.from_pretrained(out / "vae")
    assert diffusers.UNet2DConditionModel.from_pretrained(out / "unet").config.in_channels == 4
    prior = dmap.load_prior(str(out))
    assert isinstance(prior, LatentPrior) and prior.shape == (4, 8, 8) and prior.image_shape == (1, 32, 32)
    assert prior.scaling_factor == vae.config.scaling_factor
    with torch.no_grad():
        assert prior.encode(data).std().item() == pytest.approx(1.0, rel=1e-4)
    assert (out / "vae.run" / "loss.csv").read_text().count("\n") == 4 and (out / "unet.run" / "checkpoint.pt").exists()
    from dmap.cse.controlnet import controllable, new_controlnet

    assert controllable(prior) and new_controlnet(prior).config.conditioning_embedding_out_channels == (16, 32, 96)


def test_sd_embed_stores_the_empty_prompt_embedding_the_prior_reads(tmp_path, capsys):
    """A tiny CLIP tokenizer and text encoder in the folder: `dmap sd-embed` writes the
    encoder's last hidden state for the ids [BOS, EOS, EOS, ...] (the empty prompt)."""
    import json

    transformers = pytest.importorskip("transformers")
    from dmap.cli import main

    folder = tiny_sd(tmp_path / "sd")
    (folder / "prompt_embedding.safetensors").unlink()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a</w>": 3}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(folder / "tokenizer")
    sizes = {"vocab_size": 4, "hidden_size": WIDTH, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = transformers.CLIPTextConfig(**sizes, max_position_embeddings=77, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    encoder = transformers.CLIPTextModel(config).eval()
    encoder.save_pretrained(folder / "text_encoder")
    assert main(["sd-embed", str(folder)]) == 0
    prior = dmap.load_prior(f"sd={folder}")
    ids = torch.tensor([[0] + [1] * 76])
    with torch.no_grad():
        torch.testing.assert_close(prior.inner.net.embedding, encoder(ids)[0])
    assert main(["sd-embed", str(tmp_path)]) == 2
    assert "no tokenizer/" in capsys.readouterr().err


def test_control_image_is_the_regularized_back_projection():
    from dmap.cse.controlnet import control_image

    task = dmap.make_task("sr4", (1, 8, 8), generator=seeded(0))
    y = torch.randn(2, *task.operator.y_shape, generator=seeded(1), dtype=torch.float64)
    A = task.operator.matrix().double()
    expected = (A.T @ torch.linalg.solve(A @ A.T + 0.1**2 * torch.eye(len(A), dtype=A.dtype), y.reshape(2, -1).T)).T
    torch.testing.assert_close(control_image(task.operator, y, 0.1).reshape(2, -1), expected)


def test_a_fresh_controlnet_leaves_eps_unchanged_exactly(sd):
    from dmap.cse import AdapterMeta
    from dmap.cse.controlnet import ControlNetCSE, new_controlnet

    _, prior = sd
    cse = ControlNetCSE(prior, new_controlnet(prior), AdapterMeta("sr4", prior.name, prior.fingerprint(), 0.05))
    z = torch.randn(2, *prior.shape, generator=seeded(5))
    cond = torch.randn(2, *prior.image_shape, generator=seeded(6))
    with torch.no_grad():
        assert torch.equal(cse.eps(z, 400, cond), prior.eps(z, 400))


def test_a_controlnet_estimator_trains_saves_loads_and_runs(sd, tmp_path):
    """train-cse on the latent prior writes a diffusers ControlNet folder; loaded back it
    gives the same eps, refuses another noise level, and cse / dps+cse / dmap+cse run with it."""
    from dmap.cse import load_cse
    from dmap.train import train_cse

    _, prior = sd
    data = torch.rand(8, *prior.image_shape, generator=seeded(7)) * 2 - 1
    out = train_cse(prior, "sr4", data, list(range(8)), tmp_path / "cn", steps=2, batch_size=2, checkpoint_every=1)
    assert (out / "config.json").is_file() and diffusers.ControlNetModel.from_pretrained(out).config.conditioning_channels == 3
    cse = load_cse(prior, out, "sr4", 0.05)
    with pytest.raises(ValueError, match="trained at sigma_y = 0.05, not 0"):
        load_cse(prior, out, "sr4", 0.0)
    task = dmap.make_task("sr4", prior.image_shape, sigma_y=0.05, generator=seeded(0))
    y = task.simulate(data[:2], generator=sample_generators(2, 2))
    z = torch.randn(2, *prior.shape, generator=seeded(8))
    with torch.no_grad():
        cond = cse.condition(task.operator, y)
        assert not torch.equal(cse.eps(z, 300, cond), prior.eps(z, 300))  # trained: no longer the prior
    for method in ("cse", "dps+cse", "dmap+cse"):
        small = {"step_size": 0.01} if method != "cse" else {}  # random weights: small steps
        options = dmap.resolve_options(method, prior.name, "sr4", steps=3, **small)
        x = dmap.api.run_method(method, prior, task, y, options, generator=sample_generators(3, 2), cse=cse)
        assert x.shape == (2, *prior.image_shape) and torch.isfinite(x).all()


@pytest.mark.parametrize("option", ["gradient_checkpointing", "decoder_slicing", "channels_last"])
def test_memory_options_change_memory_not_results(sd, option):
    folder, prior = sd
    lean = dmap.load_prior(f"sd={folder}", **{option: True})
    if option == "gradient_checkpointing":
        assert lean.inner.net.unet.is_gradient_checkpointing and lean.vae.is_gradient_checkpointing
    if option == "decoder_slicing":
        assert lean.vae.use_slicing
    if option == "channels_last":
        assert lean.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    task = dmap.make_task("sr4", prior.image_shape, sigma_y=0.05, generator=seeded(0))
    y = task.simulate(torch.rand(2, *prior.image_shape, generator=seeded(1)) * 2 - 1, generator=sample_generators(2, 2))
    options = dmap.resolve_options("dps", prior.name, "sr4", steps=4)
    runs = [dmap.api.run_method("dps", p, task, y, options, generator=sample_generators(3, 2)) for p in (prior, lean)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs a (diffusers network|latent prior)"):
        dmap.load_prior("gmm-mnist", **{option: True}) if option != "channels_last" else dmap.load_prior(
            "gmm-mnist", decoder_slicing=True
        )


def test_analyze_refuses_a_latent_prior_in_one_line(sd, tmp_path, capsys):
    from dmap.cli import main

    folder, _ = sd
    assert main(["analyze", "--prior", f"sd={folder}", "--task", "sr4", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes pixel priors" in err and not (tmp_path / "a").exists()


def test_the_full_size_sd2_base_fixture_has_the_published_sizes():
    """benchmarks/fixtures/sd2-base (the configs behind benchmarks/sd_speed.py), built on the
    meta device: the published parameter counts, 512 px images on 4 x 64 x 64 latents."""
    import json

    import diffusers

    from dmap.priors.diffusers import assemble_prior

    fixture = Path(__file__).resolve().parent.parent / "benchmarks" / "fixtures" / "sd2-base"
    config = lambda part: json.loads((fixture / part).read_text())  # noqa: E731
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(config("unet/config.json"))
        vae = diffusers.AutoencoderKL.from_config(config("vae/config.json"))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 865.9
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6, 1) == 83.7
    prior = assemble_prior(unet, config("scheduler/scheduler_config.json"), vae, torch.zeros(1, 77, 1024, device="meta"))
    assert prior.image_shape == (3, 512, 512) and tuple(prior.shape) == (4, 64, 64)
