"""Process-group handling for `torchrun`: one process per device, rank 0 writes.

Without WORLD_SIZE in the environment everything runs as a single process and no process
group is created. Under `torchrun` (or any launcher that sets WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) the group is initialised with NCCL on CUDA and gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False  # we created the group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.initialised_here

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    def all_reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar logs over ranks (identity for one process)."""
        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        t /= self.world_size
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def all_true(self, flag: bool) -> bool:
        """True when `flag` holds on every rank (itself for one process)."""
        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str = "cpu") -> DistContext:
    """Pick the device and join the process group when launched by torchrun."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "WORLD_SIZE" not in os.environ:
        return DistContext(device=torch.device(device))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        created = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, initialised_here=created)


def wrap_ddp(module: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DistributedDataParallel around `module` when a process group is up, else the module itself.

    find_unused_parameters: the Swin backbone and Mask2Former carry parameters that a given
    forward may not reach (and the flow phase trains only a subset), so let DDP look.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if hasattr(module, "module") and isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
