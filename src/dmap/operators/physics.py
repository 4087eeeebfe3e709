"""The measurement as every sampler sees it: one object for operator, noise and decoder.

A :class:`Physics` is made once per solve (:meth:`Physics.of`): the task's operator
whitened by its noise model (unchanged for Gaussian noise), the noise std ``sigma_y`` per
sample of the whitened measurement, and, for a latent prior, the decoder ``D`` folded in,
so that a sampler working on latents sees ``A(D(z))`` and returns images.  Samplers ask
it what it can do (``linear``, ``svd``, ``gaussian``) instead of reading flags.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dmap.operators.base import LinearOperator, Operator, SVDOperator
from dmap.operators.noise import GaussianNoise


class Physics:
    """``y = A(x) + n`` for a batch: ``operator`` (whitened), ``sigma_y [B]`` (the noise std
    per entry of the whitened ``y``; None where no method reads it), ``gaussian`` (the noise model is Gaussian) and
    ``decoder`` (None for a pixel prior; else the latent prior's ``D``).

    On a latent prior ``A(z) = A_task(clip(D(z)))``: the decoded estimate is clipped to the
    image range [-1, 1], where the data lie."""

    def __init__(
        self,
        operator: Operator,
        sigma_y: Tensor | None = None,
        *,
        gaussian: bool = True,
        decoder: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.operator, self.sigma_y, self.gaussian, self.decoder = operator, sigma_y, gaussian, decoder

    @classmethod
    def of(cls, task, y: Tensor, decoder: Callable[[Tensor], Tensor] | None = None) -> tuple[Physics, Tensor]:
        """The physics of ``task`` (a :class:`~dmap.operators.tasks.Task`) for the measurements
        ``y``, and ``y`` whitened as its data term expects."""
        sigma_y = task.noise.whitened_std(y)
        operator, y = task.noise.whiten(task.operator, y)
        return cls(operator, sigma_y, gaussian=isinstance(task.noise, GaussianNoise), decoder=decoder), y

    # --- what it can do ---------------------------------------------------------------

    @property
    def linear(self) -> bool:
        """``A`` is linear in the sampler's variable (``AT``, ``pinv`` exist)."""
        return self.decoder is None and self.operator.linear

    @property
    def svd(self) -> bool:
        """``A`` has an explicit SVD (``U``, ``UT``, ``V``, ``VT``, ``singular_values``)."""
        return self.decoder is None and isinstance(self.operator, SVDOperator)

    # --- the forward model and its data term ----------------------------------------------

    def image(self, x: Tensor) -> Tensor:
        """The image of a sampler's final state, in [-1, 1] (``D(z)`` on a latent prior)."""
        with torch.no_grad():
            return (x if self.decoder is None else self.decoder(x)).clamp(-1, 1)

    def A(self, x: Tensor) -> Tensor:
        return self.operator.A(x if self.decoder is None else self.decoder(x).clamp(-1, 1))

    def measure(self, x0_hat: Tensor, clamp: bool = True) -> Tensor:
        """``A`` of an estimate, its image clipped to [-1, 1] first when ``clamp`` (the DPS
        reference clips ``x0_hat`` before ``A``; on a latent prior the clip is in pixels)."""
        x = x0_hat if self.decoder is None else self.decoder(x0_hat)
        return self.operator.A(x.clamp(-1, 1) if clamp else x)

    # --- linear and spectral access (refused, naming the need, where A has none) --------

    def _as(self, kind: type, need: str) -> Operator:
        if not (self.svd if kind is SVDOperator else self.linear):
            raise TypeError(
                f"this measurement has no {need} (a {type(self.operator).__name__}"
                + " seen through a decoder" * (self.decoder is not None)
                + ")"
            )
        return self.operator

    def AT(self, y: Tensor) -> Tensor:
        return self._as(LinearOperator, "adjoint").AT(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self._as(LinearOperator, "pseudo-inverse").pinv(y)

    def singular_values(self) -> Tensor:
        return self._as(SVDOperator, "SVD").singular_values()

    def U(self, c: Tensor) -> Tensor:
        return self._as(SVDOperator, "SVD").U(c)

    def UT(self, y: Tensor) -> Tensor:
        return self._as(SVDOperator, "SVD").UT(y)

    def V(self, c: Tensor) -> Tensor:
        return self._as(SVDOperator, "SVD").V(c)

    def VT(self, x: Tensor) -> Tensor:
        return self._as(SVDOperator, "SVD").VT(x)
