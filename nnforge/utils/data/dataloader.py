"""``DataLoader`` (torch.utils.data.DataLoader): batches of a dataset, in order or shuffled reproducibly."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ...random import Generator
from ...tensor import Tensor
from .collate import default_collate
from .dataset import IterableDataset, TensorDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args:
        dataset: a map-style ``Dataset`` (``__getitem__``/``__len__``) or an ``IterableDataset``.
        batch_size: samples per batch (``None``: yield samples one by one, uncollated).
        shuffle: a new random order each epoch, drawn from ``generator`` or from the global generator
            (so ``nf.manual_seed`` makes the order reproducible).
        sampler / batch_sampler: custom index order / custom index batches (exclusive with ``shuffle``).
        drop_last: drop the last incomplete batch.
        collate_fn: list of samples -> batch (default ``default_collate``).
        generator: an ``nf.Generator`` for shuffling.
        num_workers, pin_memory: accepted for compatibility; loading happens in the main process.

    A ``TensorDataset`` with the default collate is batched by indexing its tensors once per batch
    (same result as collating samples, without a Python loop over samples).

    Example:
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        >>> for xb, yb in loader: ...
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool = False, sampler: Any = None,
                 batch_sampler: Any = None, num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, generator: Generator | None = None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.generator = generator
        self.num_workers = num_workers
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle or sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader: an IterableDataset takes no shuffle, sampler or batch_sampler "
                                 "(it yields samples in its own order)")
        elif batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler is mutually exclusive with batch_size, shuffle, "
                                 "sampler and drop_last")
            batch_size = None
            self.batch_size = None
        elif sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler is mutually exclusive with shuffle")
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None (no batching) is incompatible with drop_last")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size should be a positive integer, got {batch_size!r}")
        if not self._iterable:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        self.collate_fn = collate_fn if collate_fn is not None else (default_collate if self._auto_collation
                                                                     else _identity)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError for streams without a length, as in torch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def __iter__(self) -> Iterator:
        if self._iterable:
            return self._iter_stream()
        if self.batch_sampler is None:
            return (self.collate_fn(self.dataset[i]) for i in self.sampler)
        if self.collate_fn is default_collate and isinstance(self.dataset, TensorDataset) \
                and not any(t.requires_grad for t in self.dataset.tensors):
            return (_tensor_batch(self.dataset, idx) for idx in self.batch_sampler)
        return (self.collate_fn([self.dataset[i] for i in idx]) for idx in self.batch_sampler)

    def _iter_stream(self) -> Iterator:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)


def _identity(x: Any) -> Any:
    return x


def _tensor_batch(dataset: TensorDataset, indices: list) -> list:
    """``default_collate([dataset[i] for i in indices])`` in one indexing per tensor."""
    out = []
    for t in dataset.tensors:
        idx = t._backend.asarray(indices, dtype="int64")
        out.append(Tensor._make(t.data[idx], t._device))
    return out
