"""A local diffusers folder with a ``UNet2DModel`` and its scheduler as a prior (the extra
``dmap[diffusers]``).

Layouts: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``, as saved by
``DDPMPipeline.save_pretrained``) or a model folder with ``config.json`` and
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
    return Schedule(ScheduleConfig(BETA_SCHEDULES[kind], int(config.get("num_train_timesteps", 1000)),
                                   float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))))  # fmt: skip


def _find(folder: Path, *candidates: str) -> Path | None:
    return next((folder / c for c in candidates if (folder / c).is_file()), None)


def load_diffusers_prior(folder: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32) -> NetworkPrior:
    """The ``UNet2DModel`` and scheduler of the local diffusers ``folder`` as a prior."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise WeightsError("diffusers folders need the diffusers package: pip install 'dmap[diffusers]'") from None
    folder = Path(folder)
    model_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    scheduler = _find(folder, "scheduler/scheduler_config.json", "scheduler_config.json")
    if not (model_dir / "config.json").is_file() or scheduler is None:
        raise WeightsError(f"{folder}: not a diffusers folder (needs unet/config.json or config.json, and "
                           "scheduler/scheduler_config.json or scheduler_config.json)")  # fmt: skip
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise WeightsError(f"{model_dir}: holds a {config['_class_name']}, not a UNet2DModel")
    try:
        unet = UNet2DModel.from_pretrained(model_dir, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{model_dir}: the UNet2DModel does not load ({e.__class__.__name__}: {str(e)[:200]})") from None
    sched = json.loads(scheduler.read_text())
    prediction = sched.get("prediction_type", "epsilon")
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (unet.config.in_channels, h, w)
    net = DiffusersUNet(unet.eval())
    return NetworkPrior(net, schedule_from_config(sched, str(scheduler)), shape, name or folder.name, prediction, dtype)
