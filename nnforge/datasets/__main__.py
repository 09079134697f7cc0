"""``python -m nnforge.datasets``: fetch the data sets that are missing and report counts.

Exits non-zero if any data set could not be fetched or read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from . import (
    cache_dir,
    fetch_fashion_mnist,
    fetch_jane_austen,
    fetch_movie_reviews,
    load_fashion_mnist,
    load_jane_austen_lines,
    load_movie_reviews,
)


def _fashion() -> str:
    where = fetch_fashion_mnist()  # no-op when the apt package is installed
    parts = []
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(split)
        parts.append(f"{split} {images.shape[0]} images, per class {np.bincount(labels, minlength=10).tolist()}")
    return f"{where}: " + "; ".join(parts)


def _movies() -> str:
    where = fetch_movie_reviews()
    texts, labels = load_movie_reviews()
    return f"{where}: {len(texts)} sentences ({int(labels.sum())} positive, {int((labels == 0).sum())} negative)"


def _austen() -> str:
    where = fetch_jane_austen()
    books = load_jane_austen_lines()
    chars = len("\n".join(line for lines in books.values() for line in lines))
    per_book = ", ".join(f"{k} {len(v)}" for k, v in books.items())
    return f"{where}: {chars} characters; lines: {per_book}"


def main() -> int:
    print(f"cache: {cache_dir()}")
    steps: list[tuple[str, Callable[[], str]]] = [
        ("fashion-mnist", _fashion), ("movie-reviews", _movies), ("jane-austen", _austen),
    ]
    failed = 0
    for name, step in steps:
        start = time.perf_counter()
        try:
            report = step()
        except Exception as e:  # report every data set, then fail at the end
            failed += 1
            print(f"{name}: FAILED: {e}", file=sys.stderr)
            continue
        print(f"{name}: {report} [{time.perf_counter() - start:.1f}s]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
