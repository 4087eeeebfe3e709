"""Conditional score estimators (CSE): adapters on a frozen prior, one per (prior, task).

Shipped adapters live in ``dmap/assets/cse/<prior>-<task>.safetensors``; train your own
with ``dmap train-cse`` (:func:`dmap.train.train_cse`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dmap.cse.adapter import CSE, Adapter, ConditionedPrior, adapter_for, condition, load_cse
from dmap.priors.base import Prior


def shipped_cse(reference: bool = False) -> dict[tuple[str, str], Path]:
    """The shipped adapters, ``{(prior, task): path}``: those trained on 100 digits, or
    (``reference``) the references trained on every train digit, used by the diagnostics."""
    folder = Path(str(resources.files("dmap.assets").joinpath("cse", *(["reference"] if reference else []))))
    return {tuple(p.stem.split("-", 1)): p for p in sorted(folder.glob("*.safetensors"))} if folder.is_dir() else {}


def find_cse(prior: Prior, task: str, reference: bool = False) -> CSE:
    """The shipped adapter (or ``reference``) for ``(prior.name, task)``; ``ValueError``
    naming what exists if none."""
    found = shipped_cse(reference)
    if (prior.name, task) not in found:
        have = ", ".join(f"{p}/{t}" for p, t in found) or "none"
        kind = "reference conditional score estimator" if reference else "conditional score estimator"
        raise ValueError(f"no shipped {kind} for prior {prior.name!r} and task {task!r} "
                         f"(shipped: {have}); train one with `dmap train-cse` and pass --cse FILE")
    return load_cse(prior, found[(prior.name, task)], task)


def get_cse(prior: Prior, task: str, path: str | Path | None = None) -> CSE:
    """The adapter at ``path`` (checked against ``prior`` and ``task``), or the shipped one."""
    return load_cse(prior, path, task) if path else find_cse(prior, task)


__all__ = ["CSE", "Adapter", "ConditionedPrior", "adapter_for", "condition", "find_cse", "get_cse", "load_cse",
           "shipped_cse"]
