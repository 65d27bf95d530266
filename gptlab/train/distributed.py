"""Multi-process training under ``torchrun`` (DDP), and the no-op single-process case.

``torchrun --nproc_per_node=N -m gptlab train ...`` starts N processes with RANK, LOCAL_RANK and
WORLD_SIZE in their environment; ``init()`` reads them and joins the process group (NCCL on
GPUs, gloo on CPUs). Each rank draws its own disjoint batches (gptlab.data.shards.BatchSampler
takes rank and world_size), gradients are averaged by DDP, and only rank 0 writes files. With no
WORLD_SIZE (or 1) everything here is a no-op and the model is not wrapped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistInfo:
    enabled: bool = False
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> None:
        if self.enabled:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)

    def mean_item(self, t: torch.Tensor) -> float:
        """The mean of a scalar tensor over ranks, as a float (one host sync)."""
        if self.enabled:
            t = t.detach().clone()
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
            t /= self.world_size
        return t.item()


def init() -> DistInfo:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    return DistInfo(True, rank, local_rank, world_size, device)


def shutdown(info: DistInfo) -> None:
    if info.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def sync_gradients(model: torch.nn.Module, sync: bool):
    """Under DDP, skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()
