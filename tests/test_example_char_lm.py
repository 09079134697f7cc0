"""The character-level LSTM example: brief training on a slice of Jane Austen beats the unigram entropy by a
wide margin, and generation returns the requested number of characters from the vocabulary."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


@pytest.mark.slow
def test_char_lm_learns_and_generates():
    import char_lm

    from nnforge.datasets import load_jane_austen

    text = load_jane_austen()[:300_000]
    model, chars, losses = char_lm.train(text, steps=150, batch_size=32, seq_len=64, hidden=128, verbose=False)
    lookup = {c: i for i, c in enumerate(chars)}
    h1 = char_lm.unigram_entropy(np.array([lookup[c] for c in text]), len(chars))
    final = float(np.mean(losses[-20:]))
    assert np.mean(losses[:5]) > h1  # starts near log(V), above the unigram entropy
    assert final < 0.8 * h1, f"final loss {final:.3f} nats vs unigram entropy {h1:.3f}"
    sample = char_lm.generate(model, chars, "Elizabeth", 120, temperature=0.8)
    assert len(sample) == 120 and set(sample) <= set(chars)
    assert char_lm.generate(model, chars, "Elizabeth", 120, temperature=0.8) == sample  # seeded
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char_lm.generate(model, chars, "\u00e9", 5)
