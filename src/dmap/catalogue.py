"""The catalogue: what ships with the library, in one place: the named priors (and the
cache of the fitted mixture), the paper's tasks, the tuning images and the shipped
conditional score estimators.

It sits above the algorithms, as diffusers' ``from_pretrained`` sits above its models: the
core (schedules, priors, operators, solvers) and the estimators (:mod:`dmap.cse`) never
import it, and importing it registers nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from dmap.cse import CSE, load_cse
from dmap.operators.tasks import DEFAULT_SIGMA_Y
from dmap.priors.base import Prior
from dmap.priors.gmm import GaussianMixture, GMMPrior, fit_mixture
from dmap.priors.latent import LatentPrior
from dmap.priors.network import NetworkPrior
from dmap.priors.unet import load_unet_prior
from dmap.schedule import Schedule
from dmap.utils import WeightsError, load_safetensors, save_safetensors, short_sha256

PAPER_TASKS = ("inpaint-box", "inpaint-random", "deblur-aniso", "sr4", "cs2")
TUNING_SEED = 1234  # which train digits tune the presets
TASK_SEED = 0  # masks, kernels and permutations of the tuning problems and the benchmarks


def asset(*parts: str) -> Path:
    """The path of a shipped file under ``dmap/assets``."""
    return Path(str(resources.files("dmap.assets").joinpath(*parts)))


def cache_dir() -> Path:
    """Where fitted artefacts are cached: ``$DMAP_CACHE_DIR`` or ``~/.cache/dmap``."""
    return Path(os.environ.get("DMAP_CACHE_DIR") or Path.home() / ".cache" / "dmap")


def load_mnist() -> NetworkPrior:
    """``mnist``: the shipped UNet trained on the bundled train digits."""
    return load_unet_prior(asset("mnist.safetensors"), name="mnist")


def load_mnist_latent() -> Prior:
    """``mnist-latent``: the shipped latent prior, a diffusers ``AutoencoderKL`` (4 x 8 x 8
    latents) and ``UNet2DConditionModel`` trained on the bundled train digits by ``dmap train
    --latent`` (needs ``dmap[diffusers]``)."""
    from dmap.priors.diffusers import load_diffusers_prior

    return load_diffusers_prior(asset("mnist-latent"), name="mnist-latent")


def load_gmm_mnist(per_class: int = 2, rank: int = 96, floor: float = 1e-3) -> GMMPrior:
    """``gmm-mnist``: ``per_class`` x 10 probabilistic-PCA components of ``rank`` fitted
    on the bundled train digits (32 x 32) by :func:`dmap.priors.gmm.fit_mixture`, cached
    in :func:`cache_dir` keyed by the data and the fit settings."""
    from dmap.data import mnist

    images, labels = mnist("train")
    path = cache_dir() / f"gmm-mnist-{short_sha256(images)[:12]}-k{per_class}-r{rank}-f{floor:g}.safetensors"
    try:
        mixture = GaussianMixture(**load_safetensors(path, "cached mixture"))
    except WeightsError:  # not cached yet (or a damaged cache): fit and cache
        mixture = fit_mixture(images.reshape(len(images), -1), labels, per_class, rank, floor)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(path, mixture.tensors())
    return GMMPrior(mixture, Schedule.linear(), (1, 32, 32), "gmm-mnist")


PRIORS: dict[str, tuple[Callable[[], Prior], str]] = {
    "gmm-mnist": (load_gmm_mnist, "exact Gaussian mixture (20 components) fitted on the bundled digits, 1 x 32 x 32"),
    "mnist": (load_mnist, "UNet (1.1 M parameters) trained on the bundled digits, 1 x 32 x 32"),
    "mnist-latent": (
        load_mnist_latent,
        "latent diffusion (AutoencoderKL to 4 x 8 x 8, UNet2DConditionModel) trained on "
        "the bundled digits, 1 x 32 x 32 images (needs dmap[diffusers])",
    ),
}
DEFAULT_PRIOR = "mnist"


# the forms a prior can be named in, besides the shipped names (for --help and dmap list)
PRIOR_FORMS = {
    "FILE.safetensors": "a UNet trained with dmap train (its .json beside it)",
    "adm-ffhq256=FILE": "guided-diffusion ADM checkpoint with the DPS FFHQ-256 flags (ffhq_10m.pt), 3 x 256 x 256",
    "adm-imagenet256=FILE": "guided-diffusion ADM checkpoint with the ImageNet-256 unconditional flags "
    "(256x256_diffusion_uncond.pt), 3 x 256 x 256",
    "adm=FLAGS.json=FILE": "guided-diffusion ADM checkpoint with the flags in a JSON file",
    "FOLDER": "a local diffusers folder: a UNet2DModel and its scheduler, with vae/ a latent prior (needs dmap[diffusers])",
    "sd=FOLDER": "a local Stable Diffusion folder (unet/, vae/, scheduler/), the empty prompt read from "
    "FOLDER/prompt_embedding.safetensors or --prompt-embedding (make it with dmap sd-embed)",
}


def prior_form(spec: str) -> str:
    """Which form ``spec`` names a prior in: ``shipped``, ``unet``, ``adm``, ``diffusers``
    or ``sd``; ``ValueError`` listing the forms otherwise (nothing is loaded)."""
    from dmap.priors.adm import ADM_CONFIGS

    head, eq, _ = spec.partition("=")
    if spec in PRIORS:
        return "shipped"
    if eq and (head in ADM_CONFIGS or head == "adm"):
        return "adm"
    if eq and head == "sd":
        return "sd"
    if not eq and spec.endswith(".safetensors"):
        return "unet"
    if not eq and Path(spec).is_dir():
        return "diffusers"
    forms = ", ".join([*PRIORS, *PRIOR_FORMS])
    raise ValueError(f"unknown prior {spec!r}; name one of: {forms}")


def load_prior(
    name: str = DEFAULT_PRIOR,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    prompt_embedding: str | Path | None = None,
    gradient_checkpointing: bool = False,
    decoder_slicing: bool = False,
    channels_last: bool = False,
) -> Prior:
    """The prior named ``name`` (a shipped name or one of :data:`PRIOR_FORMS`), in eval
    mode on ``device``; ``dtype`` (float32, bfloat16, float16) is the precision the
    network runs in under autocast (the solvers' arithmetic stays float32);
    ``prompt_embedding``: the empty-prompt embedding file of a Stable Diffusion folder;
    ``gradient_checkpointing``: recompute the activations of its diffusers networks in the
    backward pass (less memory for the likelihood gradient, about a forward pass more);
    ``decoder_slicing``: a latent prior's decoder maps the images of a batch one at a time
    (the peak memory of one image); ``channels_last``: its networks' weights and
    activations in NHWC (faster convolutions on some GPUs).  Their measured effect:
    ``benchmarks/sd_speed.py``."""
    from dmap.priors.adm import load_adm_prior, read_flags
    from dmap.priors.diffusers import load_diffusers_prior
    from dmap.priors.network import parse_dtype

    form, dt = prior_form(name), parse_dtype(dtype)
    if form == "shipped":
        prior = PRIORS[name][0]()
    elif form == "unet":
        prior = load_unet_prior(name)
    elif form in ("diffusers", "sd"):
        folder = name.partition("=")[2] if form == "sd" else name
        prior = load_diffusers_prior(folder, dtype=dt, prompt_embedding=prompt_embedding)
        if form == "sd" and not prior.latent:
            raise WeightsError(f"{folder}: not a Stable Diffusion folder (no vae/)")
    else:
        head, _, rest = name.partition("=")
        flags, path = rest.split("=", 1) if head == "adm" and rest.count("=") else (head, rest)
        if head == "adm" and flags == head:
            raise ValueError(f"{name}: give adm=FLAGS.json=FILE")
        label = Path(flags).stem if head == "adm" else head  # the name presets are looked up by
        prior = load_adm_prior(path, read_flags(flags) if head == "adm" else head, name=label, dtype=dt)
    if isinstance(prior, NetworkPrior | LatentPrior):
        prior.dtype = dt
    return memory_options(prior.to(device or "cpu"), gradient_checkpointing, decoder_slicing, channels_last).eval()


def memory_options(prior: Prior, gradient_checkpointing: bool, decoder_slicing: bool, channels_last: bool) -> Prior:
    """``prior`` with the memory options of :func:`load_prior` switched on (ValueError where
    its networks cannot take one)."""
    if gradient_checkpointing:
        nets = [m for m in prior.modules() if getattr(m, "_supports_gradient_checkpointing", False)]
        if not nets:
            raise ValueError(f"prior {prior.name}: gradient checkpointing needs a diffusers network (a diffusers or sd= folder)")
        for net in nets:
            net.enable_gradient_checkpointing()
    if decoder_slicing:
        if not getattr(prior, "latent", False) or not hasattr(prior.vae, "enable_slicing"):
            raise ValueError(f"prior {prior.name}: decoder slicing needs a latent prior with a diffusers AutoencoderKL")
        prior.vae.enable_slicing()
    return prior.to(memory_format=torch.channels_last) if channels_last else prior


def shipped_cse(reference: bool = False) -> dict[tuple[str, str, float], Path]:
    """The shipped adapters, ``{(prior, task, sigma_y): path}`` (from each adapter's JSON
    record): those trained on 100 digits, or (``reference``) the references trained on
    every train digit, used by the diagnostics."""
    import json

    folder = asset("cse", *(["reference"] if reference else []))
    found = {}
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else ():
        meta = json.loads(path.with_suffix(".json").read_text())
        found[(meta["prior"], meta["task"], float(meta["sigma_y"]))] = path
    return found


def train_images(n: int) -> Tensor:
    """The tuning images: ``n`` train digits drawn with a fixed seed (never the test split)."""
    import torch

    from dmap.data import mnist
    from dmap.rng import seeded

    train, _ = mnist("train")
    return train[torch.randperm(len(train), generator=seeded(TUNING_SEED))[:n]]


def tuning_problem(
    prior: Prior,
    task_name: str,
    n: int,
    sigma_y: float | None = None,
    data: str | None = None,
    split: str = "train",
    midway: bool = False,
):
    """``(task, x, y)``: the task (operator from ``TASK_SEED``), ``n`` tuning digits
    (:func:`train_images`; with ``split="validation"``: ``n`` validation digits evenly spaced,
    to check a tuned preset; with ``midway`` too, the ``n - 1`` between those, their noise
    streams ``n .. 2n - 2`` after those ``n``'s, so that the two are one set of ``2n - 1``
    check digits) or the first ``n`` images of ``data`` (:func:`dmap.imageset.image_set`),
    and their measurements."""
    from dmap.data import mnist_midway, mnist_spread
    from dmap.imageset import image_set
    from dmap.operators import make_task
    from dmap.rng import sample_generators, seeded

    if split == "test":
        raise ValueError("presets are tuned and checked on train and validation digits, never on test ones")
    if midway and (data or split == "train"):
        raise ValueError("the digits midway are a second set of validation digits")
    if data:
        x = image_set(data, n, prior.image_shape).x
    else:
        x = train_images(n) if split == "train" else (mnist_midway if midway else mnist_spread)(n, split)[0]
    if tuple(x.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(
            f"the tuning images are {tuple(x.shape[1:])}, prior {prior.name} expects {prior.image_shape}"
            + ("; give --data FOLDER with images of that shape" if not data else "")
        )
    sigma_y = DEFAULT_SIGMA_Y if sigma_y is None else sigma_y
    task = make_task(task_name, prior.image_shape, sigma_y=sigma_y, generator=seeded(TASK_SEED))
    return task, x, task.simulate(x, generator=sample_generators(TASK_SEED + 1, len(x), n if midway else 0))


def shipped_path(prior: Prior, task: str, reference: bool = False, sigma_y: float | None = None) -> Path | None:
    """The shipped adapter (or ``reference``) for ``(prior.name, task)`` trained at noise
    ``sigma_y`` (default: the default noise level, 0.05), or None."""
    level = DEFAULT_SIGMA_Y if sigma_y is None else sigma_y
    found = shipped_cse(reference).items()
    return next((path for (p, t, s), path in found if (p, t) == (prior.name, task) and abs(s - level) < 1e-9), None)


def find_cse(prior: Prior, task: str, reference: bool = False, sigma_y: float | None = None) -> CSE:
    """The adapter at :func:`shipped_path`, loaded and checked; ``ValueError`` naming what exists if none."""
    level = DEFAULT_SIGMA_Y if sigma_y is None else sigma_y
    path = shipped_path(prior, task, reference, level)
    if path is None:
        have = ", ".join(f"{p}/{t} (sigma_y {s:g})" for p, t, s in shipped_cse(reference)) or "none"
        kind = "reference conditional score estimator" if reference else "conditional score estimator"
        raise ValueError(
            f"no shipped {kind} for prior {prior.name!r} and task {task!r} at sigma_y = {level:g} "
            f"(shipped: {have}); train one with `dmap train-cse` and pass --cse FILE"
        )
    return load_cse(prior, path, task, sigma_y)


def get_cse(prior: Prior, task: str, path: str | Path | None = None, sigma_y: float | None = None) -> CSE:
    """The adapter at ``path`` (checked against ``prior``, ``task`` and ``sigma_y``), or the shipped one."""
    return load_cse(prior, path, task, sigma_y) if path else find_cse(prior, task, sigma_y=sigma_y)
