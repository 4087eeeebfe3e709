"""Small helpers used across the library: atomic writes, short hashes, checked weight
loading and seeded initialization."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


class WeightsError(ValueError):
    """A weights file that is missing, corrupt, truncated or of another architecture."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one
    step (a reader never sees half a file), on failure it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (some writers make their files 0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plain_name(name: str) -> str:
    """``name`` if it can name a file inside a folder (letters, digits, ``. _ -``, not
    starting with a dot or a dash, no folders); ``ValueError`` otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name):
        raise ValueError(f"{name!r} is not a plain name (letters, digits, '.', '_', '-'; no folders)")
    return name


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def short_sha256(*parts: bytes | str | Tensor) -> str:
    """The first 16 hex digits of the SHA-256 of ``parts`` (tensors by their bytes)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Tensor):
            p = p.detach().cpu().contiguous().numpy().tobytes()
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


def read_json(path: str | Path, what: str) -> dict:
    """A JSON file, or :class:`WeightsError` naming the file and ``what`` it should be."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file ({what})") from None
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid {what} ({e.__class__.__name__})") from None


def load_safetensors(path: str | Path, what: str = "weights file") -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file, or :class:`WeightsError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file ({what})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid {what} ({e.__class__.__name__}: {e})") from None


def save_safetensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_state(module: M, state: dict[str, Tensor], path: str | Path, what: str) -> M:
    """``module.load_state_dict(state, strict=True)``; :class:`WeightsError` on a mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(f"{path}: weights do not match {what}") from None
    return module


def seeded_init(seed: int, build: Callable[[], M]) -> M:
    """``build()`` with its random initialization drawn from ``seed``, without touching
    the caller's global generator state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: torch's current setting), then
    restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` with ``requires_grad=False`` on every parameter, restored afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
