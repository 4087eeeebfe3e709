"""A conditional score estimator (CSE): a ControlNet-style adapter on a frozen prior UNet.

Xu et al. (ICLR 2025, Sec. 4) train a light conditional score estimator from 100
images and use it for the prior step of DPS and DMAP.  Our reading (DESIGN.md
section 6), after ControlNet (Zhang et al. 2023):

    c          = [A^+ y, m]                      (the measurement back in image space
                                                  and where x is observed, [B, 2C, H, W])
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
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.operators.base import LinearOperator, Operator
from dmap.priors.base import Prior
from dmap.priors.unet import UNet, UNetPrior, WeightsError, _zero


def condition(operator: Operator, y: Tensor) -> Tensor:
    """The adapter's input ``c = [A^+ y, m]`` ``[B, 2C, H, W]``: the pseudo-inverse of
    the measurement and the observed-pixel map ``m`` (the mask for inpainting, ones
    otherwise).  Raises ``ValueError`` for a nonlinear operator."""
    if not isinstance(operator, LinearOperator):
        raise ValueError("the conditional score estimator needs a linear task")
    x = operator.pinv(y)
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
        self.cond_in = nn.Sequential(nn.Conv2d(cond_channels * p * p, c, 3, padding=1), nn.SiLU(),
                                     _zero(nn.Conv2d(c, c, 3, padding=1)))
        with torch.no_grad():
            widths = [h.shape[1] for h in unet.encode(unet.conv_in(unet.fold(
                torch.zeros(1, unet.config["in_channels"], unet.config["size"], unet.config["size"]))),
                unet.embed(torch.zeros(1, dtype=torch.int64)))]
        self.zero = nn.ModuleList(_zero(nn.Conv2d(w, w, 1)) for w in widths)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> list[Tensor]:
        """The residuals ``Z_l(h_l)`` for :meth:`UNet.forward`."""
        enc = self.encoder
        temb = enc.embed(t)
        h = enc.conv_in(enc.fold(x)) + self.cond_in(enc.fold(cond))
        return [z(f) for z, f in zip(self.zero, enc.encode(h, temb), strict=True)]


class CSE(nn.Module):
    """A trained conditional score estimator for one (prior, task): the frozen
    ``prior``, its :class:`Adapter` and where it came from (``meta``: the prior's
    fingerprint, the task name, the training image indices and settings)."""

    def __init__(self, prior: UNetPrior, adapter: Adapter, meta: dict) -> None:
        super().__init__()
        self.prior = prior
        self.adapter = adapter
        self.meta = meta

    @property
    def task(self) -> str:
        return self.meta["task"]

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """``eps(x_t, t, y)`` given the condition ``c = condition(A, y)`` (a batch of one is
        broadcast to ``x_t``'s batch)."""
        t = torch.as_tensor(t, dtype=torch.int64, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        cond = cond.expand(x_t.shape[0], *cond.shape[1:]).to(x_t)
        return self.prior.net(x_t, t, self.adapter(x_t, t, cond))

    def conditioned(self, operator: Operator, y: Tensor) -> ConditionedPrior:
        """The estimator for the measurement ``y`` as a :class:`Prior` (for the solvers)."""
        return ConditionedPrior(self, condition(operator, y))

    def check(self, prior: Prior, task: str) -> None:
        """Refuse to serve another prior or task, with the reason."""
        if task != self.task:
            raise ValueError(f"this conditional score estimator was trained for task {self.task!r}, not {task!r}")
        if prior.fingerprint() != self.meta["prior_fingerprint"]:
            raise ValueError(f"this conditional score estimator was trained on prior {self.meta['prior']!r} "
                             f"(fingerprint {self.meta['prior_fingerprint']}), not on {prior.name!r} "
                             f"(fingerprint {prior.fingerprint()})")

    def save(self, path: str | Path) -> Path:
        """Write the adapter weights to ``path`` (``.safetensors``) and ``meta`` beside it (``.json``)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.contiguous() for k, v in self.adapter.state_dict().items()}
        save_file(state, str(path), metadata={"task": self.task})
        path.with_suffix(".json").write_text(json.dumps(self.meta, indent=1) + "\n")
        return path


class ConditionedPrior(Prior):
    """A :class:`CSE` with its condition fixed: ``eps(x_t, t) = eps_CSE(x_t, t, y)``."""

    def __init__(self, cse: CSE, cond: Tensor) -> None:
        super().__init__(cse.prior.schedule, cse.prior.shape)
        self.cse = cse
        self.cond = cond
        self.name = f"{cse.prior.name}+cse"

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.cse.eps(x_t, t, self.cond)


def adapter_for(prior: UNetPrior) -> Adapter:
    """A fresh adapter for ``prior`` (the condition has twice the image channels)."""
    return Adapter(prior.net, 2 * prior.shape[0])


def load_cse(prior: Prior, path: str | Path, task: str | None = None) -> CSE:
    """Load the adapter at ``path`` (``.safetensors`` with its ``.json``) onto ``prior``;
    checks that it was trained on this prior (and for ``task`` when given).  Raises
    :class:`WeightsError` on an unreadable file, ``ValueError`` on a mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not isinstance(prior, UNetPrior):
        raise ValueError(f"a conditional score estimator needs a network prior; {prior.name!r} is not one")
    path = Path(path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        state = load_file(str(path))
    except FileNotFoundError as e:
        raise WeightsError(f"{e.filename}: no such file") from None
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: not a valid adapter file ({e.__class__.__name__}: {e})") from None
    cse = CSE(prior, adapter_for(prior), meta)
    if "task" not in meta or "prior_fingerprint" not in meta:
        raise WeightsError(f"{path.with_suffix('.json')}: not an adapter description (no task or prior_fingerprint)")
    cse.check(prior, task or cse.task)
    try:
        cse.adapter.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(f"{path}: weights do not match an adapter for prior {prior.name!r}") from None
    return cse.eval().requires_grad_(False)
