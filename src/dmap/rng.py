"""Randomness without global state: every draw takes a generator, or one per sample.

Passing a list of generators (one per image) makes a batch equal to the loop over its
images: image i's noise depends only on its own generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape: Sequence[int], generator: Generators, like: Tensor) -> Tensor:
    """Standard normal noise of ``shape`` (first dim = batch) in ``like``'s dtype and
    device, drawn on the CPU so that a seed gives the same numbers on every device."""
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        z = torch.randn(shape, generator=generator, dtype=like.dtype)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        z = torch.stack([torch.randn(shape[1:], generator=g, dtype=like.dtype) for g in generator])
    return z.to(like.device)


def poisson(rates: Tensor, generator: Generators) -> Tensor:
    """Poisson draws of ``rates`` (first dim = batch), on the CPU like :func:`randn`."""
    r = rates.detach().cpu().double()
    if generator is None or isinstance(generator, torch.Generator):
        out = torch.poisson(r, generator=generator)
    else:
        if len(generator) != r.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {r.shape[0]}")
        out = torch.stack([torch.poisson(r[i], generator=g) for i, g in enumerate(generator)])
    return out.to(device=rates.device, dtype=rates.dtype)


def sample_generators(seed: int, n: int, offset: int = 0) -> list[torch.Generator]:
    """Independent generators for images ``offset .. offset + n - 1`` of a run seeded
    with ``seed`` (image i's stream depends only on ``(seed, i)``)."""
    return [seeded(seed, offset + i) for i in range(n)]


def seeded(*key: int) -> torch.Generator:
    """A CPU generator whose seed is derived from the integers ``key``."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
