"""Denoisers of any parametrization as priors: a user's network without a subclass.

The solvers step on a variance-preserving grid, ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``.
The other common parametrizations describe the same noisy family up to a scale of ``x``
and a change of noise level, so a network trained in any of them answers at every VP
level ``ab`` (``sigma = sqrt((1 - ab) / ab)``, the VE noise level of ``x_t / sqrt(ab)``):

======  =============================================  ==========================================
kind    the network                                    called at VP level ``ab`` with
======  =============================================  ==========================================
eps     ``eps(x_t, t)``, VP, integer timesteps          ``(x_t, t)``
x0      ``x0(x_t, t)``, VP, integer timesteps           ``(x_t, t)``
ve      ``D(x, sigma) = E[x0 | x = x0 + sigma n]``      ``(x_t / sqrt(ab), sigma)``
edm     ``F`` of ``D = c_skip x + c_out F(c_in x,        as ``ve``; Karras et al. 2022 (Table 1):
        c_noise)``, with ``sigma_data``                 ``c_skip = sd^2 / (sigma^2 + sd^2)``,
                                                        ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
                                                        ``c_in = 1 / sqrt(sigma^2 + sd^2)``,
                                                        ``c_noise = ln(sigma) / 4``
flow    velocity ``v(x_s, s) = eps - x0`` of            ``s = sigma / (1 + sigma)``,
        ``x_s = (1 - s) x0 + s eps`` (rectified flow)   ``x_s = (1 - s) x_t / sqrt(ab)``;
                                                        ``x0 = x_s - s v``
======  =============================================  ==========================================

Noise levels reach the network as float64-accurate float tensors ``[B]`` in the input's
dtype.  The VP grid of a non-VP network is ``schedule`` (default: the linear 1000-step
schedule, whose sigma runs from 0.01 to 157, about EDM's range of 0.002 to 80).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dmap.priors.base import Prior
from dmap.schedule import Schedule

KINDS = ("eps", "x0", "ve", "edm", "flow")


class DenoiserPrior(Prior):
    """The prior of a denoiser ``fn`` of parametrization ``kind`` (see the module docstring)
    on images of ``shape``; ``fn`` is kept as a submodule when it is an ``nn.Module``."""

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor], Tensor],
        kind: str,
        shape: tuple[int, int, int],
        schedule: Schedule | None = None,
        *,
        sigma_data: float = 0.5,
        name: str = "denoiser",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown denoiser kind {kind!r}; choose from {', '.join(KINDS)}")
        super().__init__(schedule or Schedule.linear(), shape)
        self.fn, self.kind, self.sigma_data, self.name = fn, kind, float(sigma_data), name

    def _levels(self, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """``ab`` (float64, broadcastable against ``x_t``) and ``sigma`` (float64 ``[B]``)."""
        ab = self.schedule.ab(t, x_t).expand(x_t.shape[0], *([1] * (x_t.dim() - 1)))
        return ab, ((1 - ab) / ab).sqrt().reshape(-1)

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        if self.kind == "eps":
            return self.fn(x_t, self._timesteps(x_t, t))
        return self.schedule.x0_to_eps(x_t, self.x0(x_t, t), t)

    def x0(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        if self.kind == "eps":
            return self.schedule.eps_to_x0(x_t, self.eps(x_t, t), t)
        if self.kind == "x0":
            return self.fn(x_t, self._timesteps(x_t, t))
        ab, sigma = self._levels(x_t, t)
        if bool((sigma == 0).all()):  # t = -1: the clean image itself
            return x_t
        dt = x_t.dtype
        if self.kind == "flow":
            s = sigma / (1 + sigma)
            x_s = x_t * (ab.rsqrt() / (1 + sigma.reshape(ab.shape))).to(dt)  # (1 - s) / sqrt(ab)
            return x_s - s.reshape(ab.shape).to(dt) * self.fn(x_s, s.to(dt))
        x = x_t * ab.rsqrt().to(dt)
        if self.kind == "ve":
            return self.fn(x, sigma.to(dt))
        sd2, sig2 = self.sigma_data**2, sigma.reshape(ab.shape) ** 2
        c_skip, c_out = sd2 / (sig2 + sd2), sig2.sqrt() * self.sigma_data / (sig2 + sd2).sqrt()
        c_in = (sig2 + sd2).rsqrt()
        return c_skip.to(dt) * x + c_out.to(dt) * self.fn(c_in.to(dt) * x, (sigma.log() / 4).to(dt))

    @staticmethod
    def _timesteps(x_t: Tensor, t: Tensor | int) -> Tensor:
        return torch.as_tensor(t, dtype=torch.int64, device=x_t.device).reshape(-1).expand(x_t.shape[0])


def from_denoiser(
    fn: Callable[[Tensor, Tensor], Tensor] | nn.Module,
    kind: str,
    shape: tuple[int, int, int],
    *,
    schedule: Schedule | None = None,
    sigma_data: float = 0.5,
    name: str = "denoiser",
) -> DenoiserPrior:
    """A prior from a network in any parametrization (``kind``: eps, x0, ve, edm, flow; see
    :mod:`dmap.priors.denoiser`), ready for every solver::

        prior = dmap.from_denoiser(edm_net, "edm", (3, 64, 64), sigma_data=0.5)
        x0 = dmap.solve("dps", prior, task, y, nfe=100, step_size=1.0)
    """
    return DenoiserPrior(fn, kind, shape, schedule, sigma_data=sigma_data, name=name)
