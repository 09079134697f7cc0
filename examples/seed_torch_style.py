"""Sentence sentiment with a frozen all-MiniLM-L6-v2 and a trained linear head, written as a PyTorch loop.

The same model as ``seed_keras_style.py`` (mean-pooled MiniLM + ``Linear(384, 1)``) but returning the logit,
trained with ``BCEWithLogitsLoss`` and ``Adam`` over the head's parameters only, with an explicit
``zero_grad / backward / step`` loop and an evaluation loop under ``no_grad``. Data: the movie-review sentences,
stratified 80/10/10 split (seed 0). The backbone runs at every step (no feature caching).

Run: ``python examples/seed_torch_style.py [--epochs 2] [--subset 2000] [--max-length 64]``
"""
from __future__ import annotations

import time

import numpy as np
from _movie_data import arguments, load_splits, mean_pooled_classifier

import nnforge as nf
from nnforge import nn


def batches(split: dict, batch_size: int, rng: np.random.Generator | None = None):
    """(input_ids, attention_mask, labels) tensors; shuffled when ``rng`` is given."""
    n = len(split["labels"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        rows = order[i:i + batch_size]
        yield (nf.from_numpy(split["input_ids"][rows]), nf.from_numpy(split["attention_mask"][rows]),
               nf.from_numpy(split["labels"][rows].astype(np.float32)))


def evaluate(model: nn.Module, split: dict, batch_size: int, loss_fn: nn.Module) -> tuple:
    """(mean loss, accuracy) over ``split``."""
    model.eval()
    total, correct = 0.0, 0
    with nf.no_grad():
        for ids, mask, y in batches(split, batch_size):
            logits = model(ids, mask).squeeze(-1)
            total += loss_fn(logits, y).item() * len(y)
            correct += int(((logits > 0).float() == y).sum().item())
    n = len(split["labels"])
    return total / n, correct / n


def main(argv: list | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], epochs=2, batch_size=32, lr=1e-3).parse_args(argv)
    nf.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_splits(args.max_length, args.subset, args.seed)

    model = mean_pooled_classifier(sigmoid=False)
    model.backbone.freeze()
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = nf.optim.Adam(model.head.parameters(), lr=args.lr)
    step_losses, epoch_seconds = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for ids, mask, y in batches(data["train"], args.batch_size, rng):
            optimizer.zero_grad()
            loss = loss_fn(model(ids, mask).squeeze(-1), y)
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item())
        val_loss, val_acc = evaluate(model, data["val"], args.batch_size, loss_fn)
        epoch_seconds.append(time.perf_counter() - start)
        n = -(-len(data["train"]["labels"]) // args.batch_size)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(step_losses[-n:]):.4f}, val_loss {val_loss:.4f}, "
              f"val_accuracy {val_acc:.4f}, {epoch_seconds[-1]:.1f}s")
    test_loss, test_acc = evaluate(model, data["test"], args.batch_size, loss_fn)
    print(f"test accuracy {test_acc:.4f} (loss {test_loss:.4f}); time per epoch "
          f"{', '.join(f'{s:.1f}s' for s in epoch_seconds)}")
    return {"step_losses": step_losses, "test_accuracy": test_acc, "epoch_seconds": epoch_seconds}


if __name__ == "__main__":
    main()
