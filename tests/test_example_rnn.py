"""The LSTM sentiment example trains on the real movie-review sentences and clears 70% test accuracy."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


@pytest.mark.slow
def test_rnn_sentiment_reaches_70_percent():
    import rnn_sentiment

    acc = rnn_sentiment.train(verbose=False)  # the example's defaults: 4 epochs, seed 0
    assert acc >= 0.70, f"test accuracy {acc:.4f} < 0.70"
