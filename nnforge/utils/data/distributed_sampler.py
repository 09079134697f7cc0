"""``DistributedSampler`` (torch.utils.data.distributed): each rank's equal share of a dataset's indices."""
from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np

from .sampler import Sampler

__all__ = ["DistributedSampler", "shard_indices"]


def shard_indices(indices: list, num_replicas: int, rank: int, drop_last: bool = False) -> list:
    """Rank ``rank``'s share of ``indices``: every ``num_replicas``-th index from position ``rank``, after
    padding by wrapping around to a multiple of ``num_replicas`` (or dropping the tail with ``drop_last``),
    so all ranks get the same number of samples (torch's DistributedSampler rule)."""
    n = len(indices)
    if drop_last and n % num_replicas:
        total = (n // num_replicas) * num_replicas
        indices = indices[:total]
    else:
        total = -(-n // num_replicas) * num_replicas
        pad = total - n
        if pad:
            reps = -(-pad // n) if n else 0
            indices = indices + (indices * reps)[:pad]
    return indices[rank:total:num_replicas]


class DistributedSampler(Sampler):
    """The indices of ``dataset`` that rank ``rank`` of ``num_replicas`` visits this epoch.

    With ``shuffle`` all ranks draw the same permutation (seeded by ``seed + epoch``; call ``set_epoch(e)`` at
    the start of each epoch for a new order) and each takes every ``num_replicas``-th index, so the shards of
    an epoch cover the dataset exactly once, padded by wrapping around to equal lengths (``drop_last``: the
    tail is dropped instead). The permutation differs from torch's (NumPy's generator, not torch's).

    Args:
        num_replicas / rank: default to ``nnforge.distributed``'s world size and rank.

    Example:
        >>> sampler = DistributedSampler(train_set)
        >>> loader = DataLoader(train_set, batch_size=32, sampler=sampler)
        >>> for epoch in range(3):
        ...     sampler.set_epoch(epoch)
        ...     for xb, yb in loader: ...
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: give num_replicas and rank, or call "
                                   "nnforge.distributed.init_process_group() first")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive integer, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // num_replicas if drop_last and n % num_replicas else -(-n // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = (np.random.default_rng(self.seed + self.epoch).permutation(n).tolist() if self.shuffle
                 else list(range(n)))
        return iter(shard_indices(order, self.num_replicas, self.rank, self.drop_last))

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of epoch ``epoch`` (the same on every rank)."""
        self.epoch = epoch

    def __repr__(self) -> str:
        return (f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")
