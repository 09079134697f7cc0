"""Stratified train/validation/test split with a fixed seed (host-side NumPy)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["stratified_split"]


def stratified_split(labels: Any, fractions: tuple = (0.8, 0.1, 0.1), seed: int = 0) -> list[np.ndarray]:
    """Split row indices into ``len(fractions)`` parts keeping each class's share in every part.

    Each class's rows are shuffled with ``seed`` and cut by the cumulative fractions (rounded), so the split
    depends only on the labels, the fractions and the seed. Each part's indices are returned sorted.
    Multi-hot or float labels are stratified by the label's string form when it has few values, else not at all.

    Args:
        labels: (N,) class ids, strings, or any per-row values.
        fractions: shares that sum to 1, e.g. (0.8, 0.1, 0.1) for train/validation/test.
    Example:
        >>> train, val, test = stratified_split([0, 1] * 50, (0.8, 0.1, 0.1), seed=0)
        >>> len(train), len(val), len(test)
        (80, 10, 10)
    """
    fractions = tuple(float(f) for f in fractions)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    keys = [repr(v) for v in labels]
    n = len(keys)
    uniq, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    if len(uniq) > max(50, n // 10):  # regression-like targets: a plain shuffled split
        inverse = np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    cum = np.cumsum((0.0,) + fractions)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in range(int(inverse.max()) + 1 if n else 0):
        idx = np.flatnonzero(inverse == c)
        idx = idx[rng.permutation(len(idx))]
        cuts = np.rint(cum * len(idx)).astype(np.int64)
        for p in range(len(fractions)):
            parts[p].append(idx[cuts[p]:cuts[p + 1]])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
