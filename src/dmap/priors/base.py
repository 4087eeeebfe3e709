"""The prior protocol: everything a solver needs from a diffusion model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmap.schedule import Schedule
from dmap.utils import short_sha256


class Prior(nn.Module):
    """A diffusion prior on ``shape = (C, H, W)``: images in [-1, 1] (a pixel prior) or the
    latents ``z`` of an autoencoder (a latent prior, ``latent = True``).

    Subclasses implement :meth:`eps` (the noise prediction ``eps(x_t, t)``) or
    :meth:`score`; each is defined from the other through the schedule,
    ``s(x_t) = -eps / sqrt(1 - ab_t)``.  ``t`` is an int64 tensor ``[B]`` of original
    (not respaced) timesteps, or an int shared by the batch.  Images are
    ``decode(z)`` of ``image_shape``; for a pixel prior ``decode`` is the identity.
    """

    name: str = "prior"
    latent: bool = False

    def __init__(self, schedule: Schedule, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.schedule = schedule
        self.shape = tuple(shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images (``decode``'s output); ``shape`` for a pixel prior."""
        return self.shape

    def decode(self, z: Tensor) -> Tensor:
        """The image ``D(z)`` of a point of the prior's space (identity for a pixel prior)."""
        return z

    def encode(self, x: Tensor) -> Tensor:
        """The point ``E(x)`` of the prior's space for images ``x`` (identity for a pixel prior)."""
        return x

    def clip(self, x: Tensor) -> Tensor:
        """``x`` brought into the data range: [-1, 1] for images; latents are left alone."""
        return x if self.latent else x.clamp(-1, 1)

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        """Noise prediction ``eps(x_t, t)``."""
        return self.schedule.score_to_eps(self.score(x_t, t), t)

    def score(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        """Score ``grad log p_t(x_t) = -eps(x_t, t) / sqrt(1 - ab_t)``."""
        return self.schedule.eps_to_score(self.eps(x_t, t), t)

    def x0(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        """Tweedie's estimate ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``."""
        return self.schedule.eps_to_x0(x_t, self.eps(x_t, t), t)

    @property
    def prior_step(self) -> Prior:
        """The denoiser of the reverse-step mean ``mu`` (the "prior step"): this one.  The
        likelihood gradient always goes through :meth:`x0` of this one; a denoiser
        conditioned by an estimator (``dps+cse``, ``dmap+cse``) answers the estimator here."""
        return self

    @property
    def device(self) -> torch.device:
        buffers = list(self.buffers()) + list(self.parameters())
        return buffers[0].device if buffers else torch.device("cpu")

    def fingerprint(self) -> str:
        """Identifies the weights (in adapters and benchmark manifests): see :func:`fingerprint`."""
        return fingerprint(self.state_dict())


def fingerprint(tensors: dict[str, Tensor]) -> str:
    """The first 16 hex digits of the SHA-256 of named tensors (names and bytes, by name)."""
    return short_sha256(*(part for key, v in sorted(tensors.items()) for part in (key, v)))
