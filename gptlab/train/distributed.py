"""Multi-process training under ``torchrun``: DDP or FSDP, and the no-op single-process case.

``torchrun --nproc_per_node=N -m gptlab train ...`` starts N processes with RANK, LOCAL_RANK and
WORLD_SIZE in their environment; ``init()`` reads them and joins the process group (NCCL on
GPUs, gloo on CPUs). Each rank draws its own disjoint batches (gptlab.data.shards.BatchSampler
takes rank and world_size) and only rank 0 writes files. With no WORLD_SIZE (or 1) everything
here is a no-op and the model is not wrapped.

Strategies (``train.strategy``):

- ``ddp`` (what ``auto`` picks under torchrun): every rank holds the whole model and optimizer;
  DDP averages the gradients. The fastest choice whenever the model fits one device.
- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``), one unit per transformer block plus
  the root (embeddings, final norm, head). Parameters, gradients and AdamW moments are sharded
  over the ranks and gathered one block at a time, so a model W times larger than one device
  fits. Checkpoints gather the full state on rank 0 (in CPU memory), so a run directory has the
  same files whatever the strategy, and any strategy can load it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from gptlab.errors import GptlabError

STRATEGIES = ("auto", "ddp", "fsdp")


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

    def max_int(self, n: int) -> int:
        """The largest ``n`` over ranks."""
        if not self.enabled:
            return n
        t = torch.tensor(n, device=self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return int(t.item())

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


def resolve_strategy(strategy: str, info: DistInfo) -> str:
    """``single``, ``ddp`` or ``fsdp``: what ``train.strategy`` means for this launch. One process
    is always ``single`` (there is nothing to shard over or average with)."""
    if strategy not in STRATEGIES:
        raise GptlabError(f"train.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not info.enabled:
        return "single"
    return "fsdp" if strategy == "fsdp" else "ddp"


def shard(model: torch.nn.Module, info: DistInfo) -> None:
    """FSDP2 in place: each transformer block is one unit (gathered just before its forward and
    backward, freed after), the root holds the rest. Call before creating the optimizer: the
    parameters become sharded DTensors."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    for block in getattr(model.transformer, "h", ()):  # a recurrent model: the root unit only
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def wrap(model: torch.nn.Module, info: DistInfo, strategy: str = "ddp") -> torch.nn.Module:
    """The module to train: DDP around ``model``, or ``model`` itself (single, or already sharded)."""
    if strategy != "ddp" or not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def sync_gradients(model: torch.nn.Module, sync: bool):
    """Skip the gradient reduction on all but the last micro-batch of an accumulation (DDP's
    ``no_sync``, FSDP2's ``set_requires_gradient_sync``); a no-op for a single process."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: a flag, not a context
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


# ---------------------------------------------------------------------------------------------
# FSDP state dicts <-> the single-process checkpoint format


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def _param_index(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Parameter name -> the integer id ``optimizer.state_dict()`` gives it (params numbered in
    param-group order), so FSDP's name-keyed optimizer state converts to the plain format."""
    names = {id(p): name for name, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {names[id(p)]: i for i, p in enumerate(params)}


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights of an FSDP model on rank 0, in CPU memory; {} on other ranks.
    A collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The full optimizer state on rank 0 in ``optimizer.state_dict()``'s format (parameters
    numbered, not named); {} on other ranks. A collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    named = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if not named:
        return {}
    index = _param_index(model, optimizer)
    return {
        "state": {index[name]: value for name, value in named["state"].items()},
        "param_groups": [
            {**group, "params": [index[name] for name in group["params"]]} for group in named["param_groups"]
        ],
    }


def load_full_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]):
    """Load full weights (every rank holds them) into an FSDP model; each rank keeps its shard.
    Returns the missing and unexpected keys, as ``load_state_dict(strict=False)`` does."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    return set_model_state_dict(model, weights, options=_full_options(strict=False))


def load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a plain ``optimizer.state_dict()`` (every rank holds it) into an FSDP optimizer."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    name = {i: n for n, i in _param_index(model, optimizer).items()}
    named = {
        "state": {name[i]: value for i, value in state["state"].items()},
        "param_groups": [{**g, "params": [name[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, named, options=_full_options())
