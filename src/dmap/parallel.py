"""Data-parallel training over processes started by ``torchrun`` (one per GPU, or CPU
processes with gloo), as DDP does it: every process holds the same model, draws the same
whole batch from the same generator and keeps its own rows of it (:func:`shard`); after
the backward pass the gradients are averaged over the processes by one all-reduce
(:func:`average_gradients`).  With equal rows per process the averaged gradient is the
one a single process computes on the whole batch, so ``N`` processes train the model one
process would (up to the order of float additions), each running the network on ``1/N``
of every batch.

    torchrun --nproc-per-node 4 -m dmap train-cse --prior sd=FOLDER --device cuda ...

Without ``torchrun`` (or with one process) every function here is the identity.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def rank_world() -> tuple[int, int]:
    """``(rank, number of processes)`` of this process; ``(0, 1)`` outside a data-parallel run."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def is_main() -> bool:
    """Whether this process writes (checkpoints, logs, weights): rank 0."""
    return rank_world()[0] == 0


def init_data_parallel(device: str | None) -> str | None:
    """Join the process group that ``torchrun`` describes in the environment
    (``WORLD_SIZE`` > 1): NCCL with the GPU ``cuda:LOCAL_RANK`` when ``device`` is CUDA,
    gloo otherwise.  Returns this process's device (``device`` itself without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def shard(*batch: Tensor) -> tuple[Tensor, ...]:
    """This process's rows of each tensor of a batch drawn whole by every process (rank
    ``r`` of ``N`` keeps rows ``[r B / N, (r + 1) B / N)``); ``B`` must divide by ``N``."""
    rank, world = rank_world()
    if world == 1:
        return batch
    if any(len(b) % world for b in batch):
        raise ValueError(f"the batch size must be a multiple of the {world} processes, got {len(batch[0])}")
    return tuple(b.chunk(world)[rank] for b in batch)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Replace each ``p.grad`` by its mean over the processes (one all-reduce of them all)."""
    world = rank_world()[1]
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for p, piece in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = piece.view_as(p)


def mean(value: Tensor) -> float:
    """The mean of a scalar over the processes (the loss that one process on the whole batch logs)."""
    value = value.detach().clone()
    if rank_world()[1] > 1:
        dist.all_reduce(value)
        value /= rank_world()[1]
    return value.item()
