"""Shared data preparation of the fine-tuning examples: the movie-review sentences, a stratified 80/10/10
train/validation/test split (seeded), tokenised once with the all-MiniLM-L6-v2 WordPiece tokenizer.

Every example (nnforge and the transformers reference) uses ``load_splits`` so that they see the same rows
in the same order and the same token ids.
"""
from __future__ import annotations

import argparse

import numpy as np

MODEL = "all-MiniLM-L6-v2"


def stratified_split(labels: np.ndarray, fractions: tuple = (0.8, 0.1, 0.1), seed: int = 0) -> list:
    """Row indices of each part, every class split in the same proportions; each part is shuffled."""
    rng = np.random.default_rng(seed)
    parts: list = [[] for _ in fractions]
    bounds = np.cumsum(fractions)[:-1]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        for i, chunk in enumerate(np.split(rows, np.round(bounds * len(rows)).astype(int))):
            parts[i].append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def load_splits(max_length: int = 64, subset: int | None = None, seed: int = 0) -> dict:
    """``{"train", "val", "test"}`` -> ``{"input_ids", "attention_mask", "labels"}`` int64 arrays (rows padded
    to ``max_length``; longer sentences truncated). ``subset``: use only that many sentences (a stratified
    sample drawn with ``seed``) before splitting."""
    from nnforge.datasets import load_movie_reviews
    from nnforge.tokenizers import AutoTokenizer

    texts, labels = load_movie_reviews()
    if subset is not None and subset < len(texts):
        keep = np.sort(stratified_split(labels, (subset / len(texts), 1 - subset / len(texts)), seed)[0])
        texts, labels = [texts[i] for i in keep], labels[keep]
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="np", return_token_type_ids=False)
    splits = {}
    for name, rows in zip(("train", "val", "test"), stratified_split(labels, (0.8, 0.1, 0.1), seed)):
        splits[name] = {"input_ids": enc["input_ids"][rows], "attention_mask": enc["attention_mask"][rows],
                        "labels": labels[rows].astype(np.int64)}
    return splits


def arguments(description: str, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """The command-line options every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--max-length", type=int, default=64, help="tokens per sentence (pad/truncate)")
    p.add_argument("--subset", type=int, default=None, help="use only this many sentences (stratified)")
    p.add_argument("--seed", type=int, default=0)
    return p
