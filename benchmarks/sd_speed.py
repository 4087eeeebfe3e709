"""Speed, memory and FLOPs of Stable Diffusion 2 base at full size (512 px images, 64 x 64
latents), with random weights: speed does not need trained ones.

    python benchmarks/sd_speed.py [--device cpu|cuda] [--dtypes float32,bfloat16] [--batches 1,4]
        [--options none,checkpointing,slicing,channels-last] [--parts all|components] [--steps 2]
        [--reps 1] [--threads N] [--tag NAME]

The networks are built from the published configs committed in
``benchmarks/fixtures/sd2-base`` (checked: UNet 865.9 M parameters, VAE 83.7 M) with seeded
random weights and assembled into dmap's latent prior (``dmap.priors.diffusers.assemble_prior``,
the empty-prompt embedding a zero ``[1, 77, 1024]``).  Each (dtype, batch, option) runs in
its own process, so that its peak memory is its own (CUDA: peak allocated; CPU: peak
resident set size).  Per configuration: seconds of the UNet's forward and forward+backward
(the gradient with respect to its input), of the decoder's forward and forward+backward, and
(``--parts all``) of one DPS step and one DMAP step (K = 3: the steps' durations from the
solver's callback, a DMAP step being the longest, one with its inner steps); each the median
of ``--reps`` runs after a warm-up.  Seconds per image for 500 steps (the paper's setting)
are extrapolated: 500 x step / batch.  FLOPs per pass and per step are counted on the meta
device (torch's FlopCounterMode: no arithmetic is done).  Results go to
``benchmarks/results/sd_speed_<device><tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import RESULTS, peak_mb, timed
from dmap.api import run_method
from dmap.catalogue import memory_options
from dmap.operators import make_task
from dmap.presets import resolve_options
from dmap.priors.diffusers import assemble_prior
from dmap.rng import sample_generators, seeded
from dmap.utils import seeded_init

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sd2-base"
PARAMS = {"unet": 865.9e6, "vae": 83.7e6}  # published SD-2-base, rounded
OPTIONS = {
    "none": {},
    "checkpointing": {"gradient_checkpointing": True},
    "slicing": {"decoder_slicing": True},
    "channels-last": {"channels_last": True},
}
STEP_SIZE = 0.01  # (random weights: a small guidance step; the cost does not depend on it)


def build(device: str, dtype: str, option: str):
    """The full-size prior on ``device``, seeded random weights."""
    import diffusers

    config = lambda part: json.loads((FIXTURE / part).read_text())  # noqa: E731
    with torch.device(device if device.startswith(("cuda", "meta")) else "cpu"):  # (initialized where they run: fast on a GPU)
        unet = seeded_init(0, lambda: diffusers.UNet2DConditionModel.from_config(config("unet/config.json")))
        vae = seeded_init(1, lambda: diffusers.AutoencoderKL.from_config(config("vae/config.json")))
    for net, name in ((unet, "unet"), (vae, "vae")):
        n = sum(p.numel() for p in net.parameters())
        assert abs(n - PARAMS[name]) < 0.05e6, (
            f"{name}: {n / 1e6:.1f} M parameters, the published model has {PARAMS[name] / 1e6:.1f} M"
        )
    embedding = torch.zeros(1, 77, unet.config.cross_attention_dim)
    prior = assemble_prior(unet.eval(), config("scheduler/scheduler_config.json"), vae.eval(), embedding, "sd2-base")
    prior.dtype = getattr(torch, dtype)
    flags = dict.fromkeys(("gradient_checkpointing", "decoder_slicing", "channels_last"), False) | OPTIONS[option]
    return memory_options(prior.to(device), **flags).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def components(prior, batch: int, device: torch.device, reps: int) -> dict:
    """Seconds of the UNet's and the decoder's forward and forward+backward passes."""
    z = torch.randn(batch, *prior.shape, generator=seeded(2)).to(device)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)

    def grad(f):  # the gradient with respect to the input only, as the solvers take it
        def run():
            v = z.clone().requires_grad_(True)
            torch.autograd.grad(f(v).float().sum(), v)

        return run

    with torch.no_grad():
        unet_f = timed(lambda: prior.eps(z, t), reps, device)
        dec_f = timed(lambda: prior.decode(z), reps, device)
    return {
        "unet_forward_s": unet_f,
        "unet_forward_backward_s": timed(grad(lambda v: prior.eps(v, t)), reps, device),
        "decoder_forward_s": dec_f,
        "decoder_forward_backward_s": timed(grad(prior.decode), reps, device),
    }


def step_seconds(prior, method: str, batch: int, steps: int, device: torch.device) -> float:
    """One step of ``method`` on 4x super-resolution at 512 px: the longest step of a run of
    ``steps`` (for DMAP, one with its K = 3 inner steps), timed by the solver's callback."""
    task = make_task("sr4", prior.image_shape, sigma_y=0.05, generator=seeded(0))
    x = torch.rand(batch, *prior.image_shape, generator=seeded(1)) * 2 - 1
    y = task.simulate(x, generator=sample_generators(1, batch)).to(device)
    extra = {"inner_steps": 3} if method == "dmap" else {}
    options = resolve_options(method, prior.name, "sr4", steps=steps, step_size=STEP_SIZE, **extra)
    stamps = []

    def tick(info) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    stamps.append(time.perf_counter())
    run_method(method, prior, task.to(device), y, options, generator=sample_generators(2, batch), callback=tick)
    return max(b - a for a, b in zip(stamps, stamps[1:]))


def one(config: dict) -> dict:
    """Measure one configuration (run in a process of its own)."""
    device = torch.device(config["device"])
    torch.set_num_threads(config["threads"])
    start = time.perf_counter()
    prior = build(config["device"], config["dtype"], config["option"])
    row = {**config, "build_s": time.perf_counter() - start}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row |= components(prior, config["batch"], device, config["reps"])
    if config["parts"] == "all":
        for method in ("dps", "dmap"):
            row[f"{method}_step_s"] = step_seconds(prior, method, config["batch"], config["steps"], device)
            row[f"{method}_500_s_per_image"] = 500 * row[f"{method}_step_s"] / config["batch"]
    row["peak_mem_mb"] = peak_mb(device)
    return row


def flops() -> dict:
    """TFLOP of the UNet's forward, the decoder's forward, and one DPS / DMAP step (batch 1),
    counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        prior = build("meta", "float32", "none")
        z = torch.randn(1, *prior.shape)
        t = torch.full((1,), 500, dtype=torch.long)
        out = {}
        for name, fn in (("unet_forward", lambda: prior.eps(z, t)), ("decoder_forward", lambda: prior.decode(z))):
            with FlopCounterMode(display=False) as counter:
                with torch.no_grad():
                    fn()
            out[f"{name}_tflop"] = counter.get_total_flops() / 1e12
        with FlopCounterMode(display=False) as counter:
            v = z.clone().requires_grad_(
                True
            )  # UNet and decoder, forward and backward to the input (x0_hat's elementwise ops left out)
            prior.requires_grad_(
                False
            )  # (as autograd.grad in the solvers: no weight gradients; the counter cannot trace autograd.grad)
            prior.decode(prior.eps(v, t)).sum().backward()
        out["guided_pass_tflop"] = counter.get_total_flops() / 1e12
    out["dps_step_tflop"] = out["guided_pass_tflop"]
    out["dmap_step_tflop"] = out["unet_forward_tflop"] + 3 * out["guided_pass_tflop"]  # (one prior step, K = 3 guided passes)
    return out


def markdown(rows: list[dict], counted: dict, args) -> str:
    head = (
        f"SD-2-base at 512 px (random weights; {device_name(args.device)}, {args.threads} CPU threads, torch {torch.__version__}), "
        f"`python benchmarks/sd_speed.py {' '.join(sys.argv[1:])}`\n\n"
        f"FLOPs per image (meta device): UNet forward {counted['unet_forward_tflop']:.2f} TFLOP, decoder forward "
        f"{counted['decoder_forward_tflop']:.2f}; one guided pass (UNet and decoder, forward and backward) "
        f"{counted['guided_pass_tflop']:.2f}; a DMAP step (K = 3) {counted['dmap_step_tflop']:.2f}; DMAP-500 "
        f"{500 * counted['dmap_step_tflop'] / 1000:.1f} PFLOP.\n\n"
        "| dtype | batch | option | UNet fwd (s) | UNet fwd+bwd (s) | decoder fwd (s) | decoder fwd+bwd (s) "
        "| DPS step (s) | DMAP step (s) | DMAP-500 s / image (extrapolated) | peak MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    num = lambda r, k: f"{r[k]:.2f}" if k in r else "-"  # noqa: E731
    lines = [
        f"| {r['dtype']} | {r['batch']} | {r['option']} | {num(r, 'unet_forward_s')} | {num(r, 'unet_forward_backward_s')} "
        f"| {num(r, 'decoder_forward_s')} | {num(r, 'decoder_forward_backward_s')} | {num(r, 'dps_step_s')} "
        f"| {num(r, 'dmap_step_s')} | {r['dmap_500_s_per_image']:.0f} | {r['peak_mem_mb']:.0f} |"
        if "dmap_500_s_per_image" in r
        else f"| {r['dtype']} | {r['batch']} | {r['option']} | {num(r, 'unet_forward_s')} | {num(r, 'unet_forward_backward_s')} "
        f"| {num(r, 'decoder_forward_s')} | {num(r, 'decoder_forward_backward_s')} | - | - | - | {r['peak_mem_mb']:.0f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n\nThe paper: about 284-294 s per image for DMAP-500 on its GPU.\n"


def device_name(device: str) -> str:
    return (
        torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else f"CPU ({platform.processor() or 'unknown'})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--options", default="none,checkpointing,slicing,channels-last")
    p.add_argument("--parts", choices=["all", "components"], default="all", help="components: no DPS / DMAP steps")
    p.add_argument("--option-parts", choices=["all", "components"], default="components", help="for options other than none")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--tag", default="")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    rows = []
    for dtype in args.dtypes.split(","):
        for batch in map(int, args.batches.split(",")):
            for option in args.options.split(","):
                if option == "slicing" and batch == 1:
                    continue  # (slicing changes nothing for one image)
                parts = args.parts if option == "none" else args.option_parts
                config = dict(device=args.device, dtype=dtype, batch=batch, option=option, parts=parts, steps=args.steps)
                config |= dict(reps=args.reps, threads=args.threads)
                done = subprocess.run([sys.executable, __file__, "--one", json.dumps(config)], capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"configuration {config} failed")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    counted = flops()
    out = RESULTS / f"sd_speed_{args.device.split(':')[0]}{args.tag}"
    out.with_suffix(".json").write_text(json.dumps({"flops": counted, "rows": rows}, indent=1) + "\n")
    text = markdown(rows, counted, args)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
