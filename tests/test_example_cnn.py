"""The Fashion-MNIST CNN example learns: 1 epoch on 10k training images, accuracy on held-out test images."""
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
    result = example.train(epochs=1, subset=10_000, batch_size=128, seed=0, test_subset=5_000, log_every=0)
    assert result["steps"] == 79
    assert result["test_accuracy"] >= 0.80, result
