"""Character-level LSTM language model on the novels of Jane Austen, then text generation by temperature sampling.

Training draws random windows of ``seq_len`` characters from the text and predicts each next character
(cross-entropy, Adam, gradient clipping). Generation runs the prompt through the LSTM once, then feeds back
one sampled character at a time, carrying the LSTM state ``(h, c)``.

Run: ``python examples/char_lm.py [--steps 400] [--prompt "It is a truth"] [--length 300] [--temperature 0.8]``
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import nnforge as nf
import nnforge.nn.functional as F
from nnforge import nn
from nnforge.datasets import load_jane_austen


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 256, num_layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: nf.Tensor, state: tuple | None = None) -> tuple:
        """ids (B, T) -> logits (B, T, V) and the final LSTM state."""
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out), state


def unigram_entropy(codes: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the character frequencies: the loss of a model that ignores context."""
    p = np.bincount(codes, minlength=vocab_size) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def train(text: str, steps: int = 400, batch_size: int = 32, seq_len: int = 100, hidden: int = 256,
          lr: float = 3e-3, seed: int = 0, log_every: int = 50, verbose: bool = True) -> tuple:
    """Returns (model, chars, losses): ``chars`` maps ids to characters, ``losses`` one float per step."""
    nf.manual_seed(seed)
    rng = np.random.default_rng(seed)
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    codes = np.array([lookup[c] for c in text], dtype=np.int64)
    model = CharLSTM(len(chars), hidden=hidden)
    opt = nf.optim.Adam(model.parameters(), lr=lr)
    if verbose:
        print(f"{len(text):,} characters, vocabulary {len(chars)}, unigram entropy "
              f"{unigram_entropy(codes, len(chars)):.3f} nats")
    offsets = np.arange(seq_len + 1)
    losses, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        windows = codes[rng.integers(0, len(codes) - seq_len - 1, size=batch_size)[:, None] + offsets]
        x, y = nf.from_numpy(windows[:, :-1]), nf.from_numpy(windows[:, 1:])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if verbose and (step % log_every == 0 or step == steps):
            recent = losses[-log_every:]
            print(f"step {step}: loss {sum(recent) / len(recent):.3f} nats "
                  f"({(time.perf_counter() - start) / step * 1e3:.0f} ms/step)")
    return model, chars, losses


def generate(model: CharLSTM, chars: list, prompt: str, length: int, temperature: float = 0.8,
             seed: int = 0) -> str:
    """``length`` characters continuing ``prompt``, sampled from softmax(logits / temperature)."""
    if not prompt:
        raise ValueError("generate: the prompt needs at least one character")
    lookup = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(prompt) - set(lookup))
    if unknown:
        raise ValueError(f"generate: prompt characters {unknown} are not in the vocabulary")
    rng = np.random.default_rng(seed)
    model.eval()
    out = []
    with nf.no_grad():
        logits, state = model(nf.tensor([[lookup[c] for c in prompt]]))
        for _ in range(length):
            z = logits[0, -1].numpy().astype(np.float64) / max(temperature, 1e-6)
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(chars), p=p / p.sum()))
            out.append(chars[nxt])
            logits, state = model(nf.tensor([[nxt]]), state)
    model.train()
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--prompt", default="It is a truth universally acknowledged")
    ap.add_argument("--length", type=int, default=300)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    text = load_jane_austen()
    model, chars, losses = train(text, args.steps, args.batch_size, args.seq_len, args.hidden, seed=args.seed)
    tail = losses[-50:]
    print(f"final loss {sum(tail) / len(tail):.3f} nats ({sum(tail) / len(tail) / math.log(2):.3f} bits/char)")
    print(f"\n--- sample (temperature {args.temperature}) ---\n{args.prompt}"
          f"{generate(model, chars, args.prompt, args.length, args.temperature, args.seed)}")


if __name__ == "__main__":
    main()
