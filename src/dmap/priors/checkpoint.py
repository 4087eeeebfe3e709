"""Reading published checkpoints, weights only: ``.safetensors`` or ``torch.save`` files
read with ``weights_only=True``, unwrapped from the usual containers and checked against
the network they are meant for, key by key, before loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.utils import WeightsError, load_safetensors

WRAPPERS = ("ema", "net", "state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint: ``.safetensors``, or a file of ``torch.save`` read with
    ``weights_only=True`` (memory-mapped when it can be); a dict wrapped as ``{'ema': ...}``,
    ``{'net': ...}``, ``{'state_dict': ...}`` or ``{'model': ...}`` is unwrapped and a
    ``module.`` prefix (DataParallel) dropped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_safetensors(path, "checkpoint")
    else:
        if not path.is_file():
            raise WeightsError(f"{path}: no such file (checkpoint)")
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # an old (not zip) file cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise WeightsError(
                f"{path}: holds Python objects besides tensors; dmap loads weights only "
                "(weights_only=True) and will not unpickle code"
            ) from None
        except (OSError, RuntimeError, EOFError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from None
    while isinstance(state, dict) and len(state) <= 3 and any(k in state for k in WRAPPERS):
        state = state[next(k for k in WRAPPERS if k in state)]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def check_fits(net: nn.Module, state: dict[str, Tensor], path: str | Path, config_name: str) -> None:
    """:class:`WeightsError` in one line naming the first missing, unexpected and
    mis-shaped keys of ``state`` against ``net`` (``config_name``: what it was built from)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
        if shaped:
            k = shaped[0]
            parts.append(f"{len(shaped)} mis-shaped (first {k}: file {list(state[k].shape)}, configuration {list(own[k].shape)})")
        raise WeightsError(f"{path}: does not fit {config_name}: {'; '.join(parts)} keys")
