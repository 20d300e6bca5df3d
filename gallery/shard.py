"""Scale-out under `torchrun`: each rank takes every WORLD_SIZE-th pending image, and rank 0
decides (lock, resume set) and merges. Without torchrun this is a group of one.

Only small Python objects travel between ranks (gloo works for CPU and GPU runs alike).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, obj: T) -> T:
        """Rank 0's `obj`, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def total(self, n: int) -> int:
        """The sum of `n` over all ranks."""
        if self.world == 1:
            return n
        t = torch.tensor([n], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t.item())

    def part(self, items: list[T]) -> list[T]:
        return items[self.rank::self.world]


def join(timeout_min: float = 60) -> Group:
    """The torchrun group from its environment (gloo), or a group of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=timeout_min))
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def leave(group: Group) -> None:
    if group.world > 1 and dist.is_initialized():
        dist.destroy_process_group()

