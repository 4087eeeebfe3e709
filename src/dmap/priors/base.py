"""The prior protocol: everything a solver needs from a diffusion model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmap.schedule import Schedule
from dmap.utils import short_sha256


class Prior(nn.Module):
    """A diffusion prior on images of ``shape = (C, H, W)`` in [-1, 1].

    Subclasses implement :meth:`eps` (the noise prediction ``eps(x_t, t)``) or
    :meth:`score`; each is defined from the other through the schedule,
    ``s(x_t) = -eps / sqrt(1 - ab_t)``.  ``t`` is an int64 tensor ``[B]`` of original
    (not respaced) timesteps, or an int shared by the batch.
    """

    name: str = "prior"

    def __init__(self, schedule: Schedule, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.schedule = schedule
        self.shape = tuple(shape)

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
    def device(self) -> torch.device:
        buffers = list(self.buffers()) + list(self.parameters())
        return buffers[0].device if buffers else torch.device("cpu")

    def fingerprint(self) -> str:
        """Identifies the weights (in adapters and benchmark manifests): see :func:`fingerprint`."""
        return fingerprint(self.state_dict())


def fingerprint(tensors: dict[str, Tensor]) -> str:
    """The first 16 hex digits of the SHA-256 of named tensors (names and bytes, by name)."""
    return short_sha256(*(part for key, v in sorted(tensors.items()) for part in (key, v)))
