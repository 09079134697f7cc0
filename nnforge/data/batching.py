"""Dynamic padding and length bucketing: batches of similar-length sequences, each padded only to its own longest.

Sentences in a data set vary in length (the movie reviews: median 26 tokens, max 79); padding every batch to the
global maximum wastes most of the compute. ``bucket_batches`` groups indices of similar length into batches (sorted
within large random chunks, so batches still mix the data set), and :class:`PaddedBatches` is a map-style data set
whose item ``i`` is batch ``i`` padded to its longest sequence — a ``Trainer`` with ``batch_size=1`` and
``collate_fn=first`` shuffles the order of these batches each epoch and resumes exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..utils.data import Dataset

__all__ = ["PaddedBatches", "bucket_batches", "first", "pad_sequences"]


def bucket_batches(lengths: Any, batch_size: int, seed: int | None = 0, chunk_batches: int = 50) -> list[np.ndarray]:
    """Index batches of similar-length sequences.

    Args:
        lengths: (N,) sequence lengths.
        batch_size: indices per batch (the last batch may be smaller).
        seed: shuffle the indices with this seed, then sort by length inside chunks of ``chunk_batches`` batches;
            ``None``: sort the whole set by length (evaluation: the least padding, order restored by the caller).
    Returns:
        a list of int64 index arrays that together cover ``range(N)`` once.
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"bucket_batches: batch_size must be >= 1, got {batch_size}")
    if seed is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
        chunk = batch_size * max(1, chunk_batches)
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(chunk, n, chunk))]) \
            if n else order
    return [order[i:i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]


def pad_sequences(seqs: list, pad_id: int = 0, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest (or ``max_length``); returns ``(input_ids, attention_mask)`` int64 (B, L)."""
    width = max((len(s) for s in seqs), default=0) if max_length is None else max_length
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[:width]
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


class PaddedBatches(Dataset):
    """Item ``i``: a dict batch ``{"input_ids", "attention_mask"[, "labels"]}`` of NumPy arrays for ``batches[i]``,
    padded to that batch's longest sequence.

    Args:
        input_ids: per-example token id lists.
        batches: index arrays (``bucket_batches``).
        labels: (N,) or (N, K) array, or None (prediction).
        pad_id: the tokenizer's padding id.
    """

    def __init__(self, input_ids: list, batches: list, labels: Any = None, pad_id: int = 0) -> None:
        self.input_ids = input_ids
        self.batches = batches
        self.labels = None if labels is None else np.asarray(labels)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        idx = self.batches[i]
        ids, mask = pad_sequences([self.input_ids[j] for j in idx], self.pad_id)
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.labels is not None:
            batch["labels"] = self.labels[idx]
        return batch

    @property
    def num_examples(self) -> int:
        return sum(len(b) for b in self.batches)


def first(items: list) -> Any:
    """``collate_fn`` for data sets whose items are already batches: ``[batch] -> batch``."""
    return items[0]
