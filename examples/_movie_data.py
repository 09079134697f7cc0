"""Shared data preparation of the fine-tuning examples: the movie-review sentences, a stratified 80/10/10
train/validation/test split (seeded), tokenised once with the all-MiniLM-L6-v2 WordPiece tokenizer.

Every example (nnforge and the transformers reference) uses ``load_splits`` so that they see the same rows
in the same order and the same token ids.
"""
from __future__ import annotations

import argparse
import time

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


def arguments(description: str, epochs: int, batch_size: int, lr: float | None = None) -> argparse.ArgumentParser:
    """The command-line options the examples take (``--lr`` only when the example has a default for it)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    if lr is not None:
        p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--max-length", type=int, default=64, help="tokens per sentence (pad/truncate)")
    p.add_argument("--subset", type=int, default=None, help="use only this many sentences (stratified)")
    p.add_argument("--seed", type=int, default=0)
    return p


def mean_pooled_classifier(sigmoid: bool):
    """The seed programs' model: all-MiniLM-L6-v2, mean pooling over the real tokens (the sentence-transformers
    pooling of this checkpoint), then ``Linear(384, 1)``, followed by a sigmoid when ``sigmoid`` (Keras'
    ``Dense(1, activation="sigmoid")``) or returning the logit (for ``BCEWithLogitsLoss``)."""
    import nnforge as nf
    from nnforge import nn
    from nnforge.models import AutoModel

    class MeanPooledClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = AutoModel.from_pretrained(MODEL)
            self.head = nn.Linear(self.backbone.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, 384)
            mask = nf.as_tensor(attention_mask).to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, 384)
            out = self.head(pooled)  # (B, 1)
            return out.sigmoid() if sigmoid else out

    return MeanPooledClassifier()


def epoch_timer():
    """A callback (Keras ``fit`` and ``Trainer``) recording each epoch's wall time in ``.seconds``."""
    from nnforge.train.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def classifier_init(seed: int, num_labels: int, hidden: int) -> tuple:
    """The new classification head's initial (weight (num_labels, hidden), bias) as NumPy arrays: N(0, 0.02) and
    zeros (BERT's init), drawn from ``seed`` so that nnforge and the transformers reference start alike."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.02, size=(num_labels, hidden)).astype(np.float32), np.zeros(num_labels, np.float32)


def train_and_test(model, optimizer, data: dict, args: argparse.Namespace) -> tuple:
    """Train a sequence classifier with ``nnforge.train.Trainer`` (linear warmup over the first 10% of the steps,
    then linear decay; validation each epoch) and evaluate it on the test split.

    Returns ``(train result, test metrics, seconds per epoch)``."""
    import nnforge.nn.functional as F
    from nnforge.optim.lr_scheduler import get_linear_schedule_with_warmup
    from nnforge.train import Trainer

    def as_tuple(split: dict) -> tuple:
        return split["input_ids"], split["attention_mask"], split["labels"]

    steps = args.epochs * -(-len(data["train"]["labels"]) // args.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    timer = epoch_timer()
    trainer = Trainer(model, optimizer, lambda out, y: F.cross_entropy(out.logits, y), as_tuple(data["train"]),
                      eval_dataset=as_tuple(data["val"]), batch_size=args.batch_size, epochs=args.epochs,
                      seed=args.seed, lr_scheduler=scheduler, metrics=["accuracy"], callbacks=[timer])
    result = trainer.train()
    return result, trainer.evaluate(as_tuple(data["test"])), timer.seconds
