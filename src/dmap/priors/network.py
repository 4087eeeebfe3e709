"""A prior given by a network: the shipped UNet, a guided-diffusion (ADM) UNet or a
diffusers ``UNet2DModel``.

The network maps ``(x_t, t)`` to a prediction of the noise ``eps`` (``epsilon``), of the
clean image (``sample``) or of ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` (``v_prediction``);
models with a learned variance return ``2C`` channels, of which the first ``C`` are the
prediction.  Everything is converted to ``eps`` here, in float32; the network itself may
run in bfloat16 or float16 under autocast (``dtype``), the solver's arithmetic stays float32.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from dmap.priors.base import Prior
from dmap.schedule import Schedule

PREDICTIONS = ("epsilon", "sample", "v_prediction")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class NetworkPrior(Prior):
    """``eps(x_t, t)`` from ``net(x_t, t)`` (see the module docstring)."""

    def __init__(
        self,
        net: nn.Module,
        schedule: Schedule,
        shape: tuple[int, int, int],
        name: str,
        prediction: str = "epsilon",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(schedule, shape)
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; choose from {', '.join(PREDICTIONS)}")
        self.net = net
        self.name = name
        self.prediction = prediction
        self.dtype = dtype

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.run(lambda x, t: self.net(x, t), x_t, t)

    def run(self, net, x_t: Tensor, t: Tensor | int) -> Tensor:
        """``eps`` from ``net(x, t)`` (this prior's network, or one with extra inputs such as a
        ControlNet's residuals), run under autocast and converted from the prediction type."""
        t = torch.as_tensor(t, dtype=torch.int64, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        x = x_t.float()
        with autocast(x.device, self.dtype):
            out = net(x, t)
        out = out[:, : self.shape[0]].float()
        if self.prediction == "sample":
            out = self.schedule.x0_to_eps(x, out, t)
        elif self.prediction == "v_prediction":  # eps = sqrt(ab) v + sqrt(1 - ab) x_t
            out = self.schedule.coef(t, x, torch.sqrt) * out + self.schedule.coef(t, x, lambda a: (1 - a).sqrt()) * x
        return out.to(x_t.dtype)


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device`` (none for float32, so that a float32 network also
    runs on the meta device, where FLOPs are counted): how a network runs in ``dtype``."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16`` (``None``: float32); ``ValueError`` otherwise."""
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[name]
