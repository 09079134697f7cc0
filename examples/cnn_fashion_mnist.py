"""A small CNN trained from scratch on Fashion-MNIST.

Model: Conv2d(1, 32, 3, padding=1) -> ReLU -> MaxPool2d(2) -> Conv2d(32, 64, 3, padding=1) -> ReLU ->
MaxPool2d(2) -> Flatten -> Linear(64*7*7, 10). Pixels are scaled to [0, 1] and standardised with the training
set's mean/std; Adam (lr 1e-3), batch 128, cross-entropy. Two epochs on the 60,000 training images reach
about 90% accuracy on the 10,000 test images.

Run: ``python examples/cnn_fashion_mnist.py [--epochs 2] [--subset N] [--batch-size 128] [--seed 0]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import nnforge as nf
import nnforge.nn.functional as F
from nnforge import nn
from nnforge.datasets import load_fashion_mnist
from nnforge.utils.data import DataLoader, TensorDataset

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training pixels in [0, 1]


class CNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 7 * 7, num_classes)

    def forward(self, x: nf.Tensor) -> nf.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (N, 64, 7, 7)
        return self.fc(x.flatten(1))  # (N, 10)


def load_split(split: str, subset: int | None = None, seed: int = 0) -> TensorDataset:
    """Images as standardised float32 (N, 1, 28, 28) and int64 labels; ``subset`` draws N at random."""
    images, labels = load_fashion_mnist(split)
    if subset is not None and subset < len(labels):
        rows = np.random.default_rng(seed).choice(len(labels), subset, replace=False)
        images, labels = images[rows], labels[rows]
    x = ((images.astype(np.float32) / 255.0 - MEAN) / STD).reshape(-1, 1, 28, 28)
    return TensorDataset(x, labels.astype(np.int64))


def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with nf.no_grad():
        for x, y in DataLoader(data, batch_size=batch_size):
            correct += int((model(x).argmax(dim=1) == y).sum().item())
    model.train()
    return correct / len(data)


def train(epochs: int = 2, subset: int | None = None, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
          test_subset: int | None = None, log_every: int = 100) -> dict:
    """Train the CNN; returns {"test_accuracy", "seconds", "steps"}."""
    nf.manual_seed(seed)
    train_set = load_split("train", subset, seed)
    test_set = load_split("test", test_subset, seed)
    model = CNN()
    opt = nf.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        running, seen = 0.0, 0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item() * len(y)
            seen += len(y)
            step += 1
            if log_every and step % log_every == 0:
                print(f"epoch {epoch + 1} step {step}: loss {running / seen:.4f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
        if log_every:
            print(f"epoch {epoch + 1}: train loss {running / seen:.4f}", flush=True)
    seconds = time.perf_counter() - start
    return {"test_accuracy": evaluate(model, test_set), "seconds": seconds, "steps": step}


def main() -> None:
    ap = argparse.ArgumentParser(description="Train a small CNN on Fashion-MNIST.")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=None, help="train on N random training images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = train(args.epochs, args.subset, args.batch_size, args.lr, args.seed)
    print(f"test accuracy: {result['test_accuracy']:.4f} ({result['steps']} steps, "
          f"{result['seconds']:.1f} s training)")


if __name__ == "__main__":
    main()
