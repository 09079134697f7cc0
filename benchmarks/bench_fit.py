"""Overhead of ``Module.fit`` over a hand-written training loop on the same MLP and data.

Both train an MLP (784-256-10, Adam, batch 64) for one epoch over a Fashion-MNIST subset (digits upscaled
when Fashion-MNIST is not installed), shuffling with the same global generator; run by run they alternate,
and the medians are compared. Two pairs: loss only (``fit(verbose=0)`` vs a loop that tracks the loss), and
with accuracy (``metrics=["accuracy"]`` vs a loop that also counts correct predictions).

    python benchmarks/bench_fit.py [--samples 10000] [--runs 9] [--batch-size 64]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import time

import numpy as np

import nnforge as nf
from nnforge import nn
from nnforge.nn import functional as F


def load(samples: int) -> tuple:
    try:
        from nnforge.datasets import load_fashion_mnist
        x, y = load_fashion_mnist("train")
        x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    except FileNotFoundError:
        from sklearn.datasets import load_digits
        d, y = load_digits(return_X_y=True)
        x = np.repeat(np.repeat(d.reshape(-1, 8, 8), 3, 1), 3, 2)[:, :28, :28].reshape(len(d), -1)
        x = np.pad(x, ((0, 0), (0, 784 - x.shape[1]))).astype(np.float32) / 16.0
        reps = -(-samples // len(x))
        x, y = np.tile(x, (reps, 1)), np.tile(y, reps)
    return x[:samples], y[:samples].astype(np.int64)


def make_model(seed: int = 0) -> nn.Module:
    nf.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def hand_loop(model: nn.Module, opt: nf.optim.Optimizer, x: np.ndarray, y: np.ndarray, bs: int,
              accuracy: bool) -> float:
    """What one writes by hand: shuffle, slice, forward, loss, backward, step, track the mean loss."""
    model.train()
    order = nf.random._rng(None).permutation(len(x))
    total, correct = 0.0, 0
    for start in range(0, len(x), bs):
        idx = order[start:start + bs]
        xb, yb = nf.from_numpy(x[idx]), nf.from_numpy(y[idx])
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        if accuracy:
            correct += int((logits.detach().numpy().argmax(1) == y[idx]).sum())
    return total / len(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    x, y = load(args.samples)
    bs = args.batch_size
    print(f"MLP 784-256-10, Adam, {len(x)} samples, batch {bs}, {-(-len(x) // bs)} steps/epoch, {args.runs} runs")

    for with_acc in (False, True):
        loop_model, fit_model = make_model(), make_model()
        loop_opt = nf.optim.Adam(loop_model.parameters(), lr=1e-3)
        fit_model.compile(nf.optim.Adam(fit_model.parameters(), lr=1e-3), "sparse_categorical_crossentropy",
                          ["accuracy"] if with_acc else None)
        runners = {
            "hand loop": lambda m=loop_model, o=loop_opt, a=with_acc: hand_loop(m, o, x, y, bs, a),
            "fit": lambda m=fit_model: m.fit(x, y, batch_size=bs, epochs=1, verbose=0),
        }
        for fn in runners.values():  # warm up
            fn()
        times: dict = {k: [] for k in runners}
        for _ in range(args.runs):
            for name, fn in runners.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        label = "with accuracy" if with_acc else "loss only    "
        print(f"{label}: hand loop {med['hand loop'] * 1e3:8.1f} ms/epoch   fit {med['fit'] * 1e3:8.1f} ms/epoch   "
              f"overhead {100 * (med['fit'] / med['hand loop'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
