"""The seed's two programs (examples/seed_keras_style.py, examples/seed_torch_style.py) train on a small real
subset of the movie-review sentences: frozen all-MiniLM-L6-v2, mean pooling, a Linear(384, 1) head."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

ARGS = ["--subset", "512", "--max-length", "32", "--epochs", "2"]


@pytest.mark.slow
def test_keras_style_program_trains():
    import seed_keras_style

    out = seed_keras_style.main(ARGS)
    assert len(out["losses"]) == 2 and out["losses"][1] < out["losses"][0]
    assert len(out["epoch_seconds"]) == 2 and 0.0 <= out["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_torch_style_program_trains():
    import seed_torch_style

    out = seed_torch_style.main(ARGS)
    losses = np.array(out["step_losses"])
    half = len(losses) // 2  # 13 steps per epoch (409 training sentences, batch 32)
    assert len(losses) == 26 and losses[half:].mean() < losses[:half].mean()
    assert len(out["epoch_seconds"]) == 2 and 0.0 <= out["test_accuracy"] <= 1.0
