"""A local diffusers folder as a prior (the extra ``dmap[diffusers]``): a ``UNet2DModel``
and its scheduler, or a latent model (``vae/`` beside ``unet/``: a ``UNet2DModel`` on
latents, or Stable Diffusion's ``UNet2DConditionModel``; see :mod:`dmap.priors.latent`).

Layouts: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``, as saved by
``DDPMPipeline.save_pretrained`` or a Stable Diffusion pipeline; the text encoder and
tokenizer are not read) or a model folder with ``config.json`` and
``scheduler_config.json`` side by side.  The betas come from the scheduler's config
(``linear``, ``scaled_linear``, ``squaredcos_cap_v2``), the prediction type (``epsilon``,
``v_prediction``, ``sample``) too; image size and channels from the model's config.
Nothing is downloaded (``local_files_only``); weights load as safetensors or with
``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.priors.base import Prior
from dmap.priors.network import NetworkPrior
from dmap.schedule import Schedule, ScheduleConfig
from dmap.utils import WeightsError

BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


class DiffusersUNet(nn.Module):
    """``net(x_t, t)`` as a tensor, from a diffusers ``UNet2DModel`` (held as ``unet``)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.unet(x, t).sample


def schedule_from_config(config: dict, where: str) -> Schedule:
    """Our schedule for a diffusers scheduler config."""
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None or kind not in BETA_SCHEDULES:
        raise WeightsError(f"{where}: beta schedule {kind!r} is not supported; supported: {', '.join(BETA_SCHEDULES)}")
    return Schedule(
        ScheduleConfig(
            BETA_SCHEDULES[kind],
            int(config.get("num_train_timesteps", 1000)),
            float(config.get("beta_start", 1e-4)),
            float(config.get("beta_end", 0.02)),
        )
    )


def _find(folder: Path, *candidates: str) -> Path | None:
    return next((folder / c for c in candidates if (folder / c).is_file()), None)


def _load(cls, where: Path) -> nn.Module:
    try:
        return cls.from_pretrained(where, local_files_only=True, low_cpu_mem_usage=False).eval()
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{where}: the {cls.__name__} does not load ({e.__class__.__name__}: {str(e)[:200]})") from None


def read_prompt_embedding(path: Path, width: int) -> Tensor:
    """The text embedding ``[1, L, width]`` stored under ``embedding`` in ``path`` (safetensors)."""
    from dmap.utils import load_safetensors

    if not path.is_file():
        raise WeightsError(
            f"{path}: no prompt embedding; make it with `dmap sd-embed FOLDER` (needs transformers) or give --prompt-embedding FILE"
        )
    emb = load_safetensors(path).get("embedding")
    if emb is None or emb.dim() != 3 or emb.shape[0] != 1 or emb.shape[2] != width:
        got = "no 'embedding'" if emb is None else f"shape {tuple(emb.shape)}"
        raise WeightsError(f"{path}: expected an 'embedding' of shape [1, L, {width}], got {got}")
    return emb.float()


def load_diffusers_prior(
    folder: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32, prompt_embedding: str | Path | None = None
) -> Prior:
    """The prior of the local diffusers ``folder``: a ``UNet2DModel`` (pixel prior), or with
    an ``AutoencoderKL`` in ``vae/`` a latent prior (:class:`~dmap.priors.latent.LatentPrior`)
    whose network is a ``UNet2DModel`` or Stable Diffusion's ``UNet2DConditionModel`` (with
    the empty-prompt embedding of ``prompt_embedding``, default ``folder/prompt_embedding.safetensors``)."""
    try:
        import diffusers
    except ImportError:
        raise WeightsError("diffusers folders need the diffusers package: pip install 'dmap[diffusers]'") from None

    folder = Path(folder)
    model_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    scheduler = _find(folder, "scheduler/scheduler_config.json", "scheduler_config.json")
    if not (model_dir / "config.json").is_file() or scheduler is None:
        raise WeightsError(
            f"{folder}: not a diffusers folder (needs unet/config.json or config.json, and "
            "scheduler/scheduler_config.json or scheduler_config.json)"
        )
    kind = json.loads((model_dir / "config.json").read_text()).get("_class_name", "UNet2DModel")
    if kind not in ("UNet2DModel", "UNet2DConditionModel"):
        raise WeightsError(f"{model_dir}: holds a {kind}, not a UNet2DModel or UNet2DConditionModel")
    has_vae = (folder / "vae" / "config.json").is_file()
    if kind == "UNet2DConditionModel" and not has_vae:
        raise WeightsError(f"{folder}: a UNet2DConditionModel needs its AutoencoderKL in vae/ (a Stable Diffusion folder)")
    unet = _load(getattr(diffusers, kind), model_dir)
    embedding = None
    if kind == "UNet2DConditionModel":
        path = Path(prompt_embedding) if prompt_embedding else folder / "prompt_embedding.safetensors"
        embedding = read_prompt_embedding(path, unet.config.cross_attention_dim)
    vae = _load(diffusers.AutoencoderKL, folder / "vae") if has_vae else None
    return assemble_prior(unet, json.loads(scheduler.read_text()), vae, embedding, name or folder.name, dtype, str(scheduler))


def assemble_prior(
    unet: nn.Module,
    scheduler_config: dict,
    vae: nn.Module | None = None,
    embedding: Tensor | None = None,
    name: str = "diffusers",
    dtype: torch.dtype = torch.float32,
    where: str = "scheduler config",
) -> Prior:
    """The prior of diffusers modules already built: ``unet`` (a ``UNet2DModel``, or a
    ``UNet2DConditionModel`` with the prompt ``embedding [1, L, D]``), the scheduler's config
    and, for a latent prior, the ``AutoencoderKL`` ``vae``."""
    from dmap.priors.latent import LatentPrior, PromptUNet

    net = DiffusersUNet(unet) if embedding is None else PromptUNet(unet, embedding)
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    prior = NetworkPrior(
        net,
        schedule_from_config(scheduler_config, where),
        (unet.config.in_channels, h, w),
        name,
        scheduler_config.get("prediction_type", "epsilon"),
        dtype,
    )
    if vae is None:
        return prior
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    return LatentPrior(prior, vae, vae.config.scaling_factor, (vae.config.out_channels, h * f, w * f), name)
