"""The Fashion-MNIST CNN example learns: 2 epochs on 10k training images (158 steps, about 30-60 s),
then accuracy on 5k held-out test images (83.4% for this seed; the bar leaves room for BLAS rounding)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nnforge.datasets.fashion_mnist import fashion_mnist_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cnn_fashion_mnist.py"


@pytest.mark.slow
@pytest.mark.skipif(fashion_mnist_dir() is None, reason="Fashion-MNIST absent; run `python -m nnforge.datasets`")
def test_cnn_example_trains_on_a_subset() -> None:
    spec = importlib.util.spec_from_file_location("cnn_fashion_mnist", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.train(epochs=2, subset=10_000, batch_size=128, seed=0, test_subset=5_000, log_every=0)
    assert result["steps"] == 158
    assert result["test_accuracy"] >= 0.80, result
