"""A conditional score estimator (CSE): a ControlNet-style adapter on a frozen prior UNet.

Xu et al. (ICLR 2025, Sec. 4) train a light conditional score estimator from 100
images and use it for the prior step of DPS and DMAP.  Our reading (docs/cse.md),
after ControlNet (Zhang et al. 2023):

    c          = [b(y), m]                       (the measurement back in image space,
                                                  A^+ y or regularized, and where x is
                                                  observed, [B, 2C, H, W]; see condition())
    h_0        = conv_in'(fold(x_t)) + Z_c(c)    (trainable copy of the stem; Z_c ends
                                                  in a zero convolution)
    h_1..h_L   = encode'(h_0, t)                 (trainable copy of the contracting path
                                                  and middle block)
    eps(x_t, t, y) = UNet(x_t, t; residuals = Z_l(h_l))   (frozen prior; each Z_l is a
                                                  zero-initialized 1 x 1 convolution)

At initialization every ``Z`` is zero, so the estimator equals the prior exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.config import Config, ConfigError
from dmap.operators.base import Operator, conjugate_gradients
from dmap.priors.base import Prior
from dmap.priors.network import NetworkPrior
from dmap.priors.unet import UNet, _zero
from dmap.utils import WeightsError, load_safetensors, load_state, read_json, save_safetensors, write_json_atomic


@dataclass(frozen=True)
class AdapterMeta(Config):
    """Where an adapter came from (saved beside its weights): the task and measurement
    noise ``sigma_y`` it was trained for, the prior (name and weight fingerprint), the
    training images and settings."""

    task: str
    prior: str
    prior_fingerprint: str
    sigma_y: float
    images: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    condition: str = "pinv"  # how y enters: see condition()


CONDITIONS = ("pinv", "regularized")


def control_image(operator: Operator, y: Tensor, sigma_y: float, iters: int = 100) -> Tensor:
    """``c = A^T (A A^T + s^2 I)^-1 y`` with ``s = max(sigma_y, 1e-3)`` per sample
    (conjugate gradients in y-space); ``ValueError`` for a nonlinear operator."""
    if not operator.linear:
        raise ValueError("the conditional score estimator needs a linear task")
    s2 = max(sigma_y, 1e-3) ** 2
    v = conjugate_gradients(lambda u: operator.A(operator.AT(u)) + s2 * u, y, torch.zeros_like(y), iters)
    return operator.AT(v)


def condition(operator: Operator, y: Tensor, kind: str = "pinv", sigma_y: float = 0.0) -> Tensor:
    """The adapter's input ``c = [b, m]`` ``[B, 2C, H, W]``: the measurement brought back
    to image space, ``b = A^+ y`` (``pinv``) or ``b = A^T (A A^T + s^2 I)^-1 y`` with ``s =
    max(sigma_y, 1e-3)`` (``regularized``: no noise amplification where ``A`` is
    ill-conditioned; on deblur-aniso ``|A^+ y|`` reaches 2e4), and the observed-pixel map
    ``m`` (the mask for inpainting, ones otherwise).  ``ValueError`` for a nonlinear operator."""
    if not operator.linear:
        raise ValueError("the conditional score estimator needs a linear task")
    if kind not in CONDITIONS:
        raise ValueError(f"unknown condition {kind!r}; choose from {', '.join(CONDITIONS)}")
    x = operator.pinv(y) if kind == "pinv" else control_image(operator, y, sigma_y)
    return torch.cat([x, operator.observed().to(x).expand_as(x)], dim=1)


class Adapter(nn.Module):
    """The trainable half of the CSE: a copy of ``unet``'s stem, contracting path and
    middle block (initialized from its weights), a condition stem and one zero
    convolution per feature it hands to the frozen network."""

    def __init__(self, unet: UNet, cond_channels: int) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(unet).requires_grad_(True)
        del self.encoder.up, self.encoder.out  # only the contracting half is copied
        c, p = unet.channels, unet.patch
        self.cond_in = nn.Sequential(
            nn.Conv2d(cond_channels * p * p, c, 3, padding=1), nn.SiLU(), _zero(nn.Conv2d(c, c, 3, padding=1))
        )
        with torch.no_grad():
            widths = [
                h.shape[1]
                for h in unet.encode(
                    unet.conv_in(unet.fold(torch.zeros(1, unet.config.in_channels, unet.config.size, unet.config.size))),
                    unet.embed(torch.zeros(1, dtype=torch.int64)),
                )
            ]
        self.zero = nn.ModuleList(_zero(nn.Conv2d(w, w, 1)) for w in widths)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> list[Tensor]:
        """The residuals ``Z_l(h_l)`` for :meth:`UNet.forward`."""
        enc = self.encoder
        temb = enc.embed(t)
        h = enc.conv_in(enc.fold(x)) + self.cond_in(enc.fold(cond))
        return [z(f) for z, f in zip(self.zero, enc.encode(h, temb), strict=True)]


class CSE(nn.Module):
    """A trained conditional score estimator for one (prior, task): the frozen
    ``prior``, its :class:`Adapter` and where it came from (:class:`AdapterMeta`).

    The prior is held, not owned: it is no submodule, so ``cse.eval()`` or
    ``cse.requires_grad_(False)`` leave the caller's prior as it is."""

    def __init__(self, prior: NetworkPrior, adapter: Adapter, meta: AdapterMeta) -> None:
        super().__init__()
        self.__dict__["prior"] = prior  # not registered as a submodule (see above)
        self.adapter = adapter
        self.meta = meta

    @property
    def task(self) -> str:
        return self.meta.task

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """``eps(x_t, t, y)`` given the condition ``c = condition(A, y)`` (a batch of one is
        broadcast to ``x_t``'s batch)."""
        t = torch.as_tensor(t, dtype=torch.int64, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        cond = cond.expand(x_t.shape[0], *cond.shape[1:]).to(x_t)
        return self.prior.net(x_t, t, self.adapter(x_t, t, cond))

    def condition(self, operator: Operator, y: Tensor) -> Tensor:
        """The adapter's input for ``y`` (:func:`condition`, of the kind it was trained with)."""
        return condition(operator, y, self.meta.condition, self.meta.sigma_y)

    def conditioned(self, operator: Operator, y: Tensor) -> ConditionedPrior:
        """The estimator for the measurement ``y`` as a :class:`Prior` (for the solvers)."""
        return ConditionedPrior(self, self.condition(operator, y))

    def denoiser(self, operator: Operator, y: Tensor, guide: str = "cse") -> Prior:
        """The denoiser the CSE methods sample with, for the task's ``operator`` and ``y``:
        the estimator itself (``guide="cse"``), or the unconditional prior whose prior step
        is the estimator (``guide="prior"``: the likelihood gradient goes through the prior)."""
        conditioned = self.conditioned(operator, y)
        return conditioned if guide == "cse" else EstimatorStep(self.prior, conditioned)

    def check(self, prior: Prior, task: str, sigma_y: float | None = None) -> None:
        """Refuse to serve another prior, task or noise level (``sigma_y``), with the reason."""
        if task != self.task:
            raise ValueError(f"this conditional score estimator was trained for task {self.task!r}, not {task!r}")
        if prior.fingerprint() != self.meta.prior_fingerprint:
            raise ValueError(
                f"this conditional score estimator was trained on prior {self.meta.prior!r} "
                f"(fingerprint {self.meta.prior_fingerprint}), not on {prior.name!r} "
                f"(fingerprint {prior.fingerprint()})"
            )
        if sigma_y is not None and abs(sigma_y - self.meta.sigma_y) > 1e-9:
            raise ValueError(
                f"this conditional score estimator was trained at sigma_y = {self.meta.sigma_y:g}, "
                f"not {sigma_y:g}; train one for this noise level with dmap train-cse --sigma-y"
            )

    def save(self, path: str | Path) -> Path:
        """Write the adapter weights to ``path`` (``.safetensors``) and ``meta`` beside it (``.json``)."""
        path = Path(path)
        save_safetensors(path, self.adapter.state_dict(), metadata={"task": self.task})
        write_json_atomic(path.with_suffix(".json"), self.meta.to_dict())
        return path


class ConditionedPrior(Prior):
    """A :class:`CSE` with its condition fixed: ``eps(x_t, t) = eps_CSE(x_t, t, y)``."""

    def __init__(self, cse: CSE, cond: Tensor) -> None:
        super().__init__(cse.prior.schedule, cse.prior.shape)
        self.cse = cse
        self.cond = cond
        self.name, self.latent = f"{cse.prior.name}+cse", cse.prior.latent

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.cse.eps(x_t, t, self.cond)


class EstimatorStep(Prior):
    """``prior`` for everything but the prior step, which the estimator ``conditioned``
    takes (the reverse-step mean of ``dps+cse`` / ``dmap+cse`` with ``guide="prior"``)."""

    def __init__(self, prior: Prior, conditioned: ConditionedPrior) -> None:
        super().__init__(prior.schedule, prior.shape)
        self.prior, self.conditioned = prior, conditioned
        self.name, self.latent = prior.name, prior.latent

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.prior.eps(x_t, t)

    def x0(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.prior.x0(x_t, t)

    @property
    def prior_step(self) -> Prior:
        return self.conditioned


def check_unet_prior(prior: Prior) -> None:
    """``ValueError`` unless ``prior`` runs the library's own :class:`UNet` (the adapter
    copies its contracting path)."""
    if not (isinstance(prior, NetworkPrior) and isinstance(prior.net, UNet)):
        raise ValueError(
            f"prior {prior.name!r} has no dmap UNet to adapt; the conditional score estimator needs "
            "the shipped mnist prior, one trained with dmap train, or a latent prior with a UNet2DConditionModel"
        )


def adapter_for(prior: NetworkPrior) -> Adapter:
    """A fresh adapter for ``prior`` (the condition has twice the image channels)."""
    return Adapter(prior.net, 2 * prior.shape[0])


def load_adapter(prior: Prior, path: str | Path, task: str | None = None, sigma_y: float | None = None) -> CSE:
    """The adapter at ``path`` (``.safetensors`` with its ``.json``) on the pixel ``prior``,
    checked (prior, and ``task`` and ``sigma_y`` when given) before its weights load.
    Raises :class:`WeightsError` on an unreadable file, ``ValueError`` on a mismatch."""
    check_unet_prior(prior)
    path = Path(path)
    state = load_safetensors(path, "adapter weights file")
    desc = path.with_suffix(".json")
    try:
        meta = AdapterMeta.from_dict(read_json(desc, f"description of the adapter {path.name}"), desc.name)
    except ConfigError as e:
        raise WeightsError(str(e)) from None
    cse = CSE(prior, adapter_for(prior), meta)
    cse.check(prior, task or cse.task, sigma_y)
    load_state(cse.adapter, state, path, f"an adapter for prior {prior.name!r}")
    return cse
