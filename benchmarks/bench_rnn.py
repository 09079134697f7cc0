"""LSTM sentence-classifier training step (embedding -> LSTM -> last hidden state -> Linear -> cross-entropy
-> Adam step): nnforge vs PyTorch CPU, same weights and batches, alternating repeats.

Run: ``python benchmarks/bench_rnn.py`` (``--quick`` for fewer repeats, ``--threads N`` for both frameworks).
Ratios below 1 mean nnforge is faster.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import nnforge as nf  # noqa: E402  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import compare, machine, print_table, set_threads  # noqa: E402


def _models(lib, vocab: int, emb: int, hidden: int, classes: int, kind: str, bidirectional: bool):
    nn = lib.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, emb)
            self.rnn = getattr(nn, kind)(emb, hidden, batch_first=True, bidirectional=bidirectional)
            self.head = nn.Linear(hidden * (2 if bidirectional else 1), classes)

        def forward(self, ids):
            out, _ = self.rnn(self.embed(ids))
            return self.head(out[:, -1])

    return Classifier()


def training_step(kind: str = "LSTM", batch: int = 64, length: int = 64, hidden: int = 256, emb: int = 128,
                  vocab: int = 10_000, classes: int = 2, bidirectional: bool = False) -> tuple:
    """(nnforge step, torch step) closures: one training step each, same weights and batch."""
    torch.manual_seed(0)
    tm = _models(torch, vocab, emb, hidden, classes, kind, bidirectional)
    m = _models(nf, vocab, emb, hidden, classes, kind, bidirectional)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(batch, length))
    labels = rng.integers(0, classes, size=batch)
    x, y, tx, ty = nf.tensor(ids), nf.tensor(labels), torch.tensor(ids), torch.tensor(labels)
    opt = nf.optim.Adam(m.parameters(), lr=1e-3)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)

    def nf_step():
        opt.zero_grad()
        loss = nf.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    def torch_step():
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(tx), ty)
        loss.backward()
        topt.step()

    return nf_step, torch_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="BLAS / intra-op threads for both (default: all cores)")
    args = ap.parse_args()
    threads = set_threads(args.threads)  # torch and nnforge's BLAS alike
    number, repeats = (1, 3) if args.quick else (3, 5)
    print(f"# {machine()}, {threads} threads")
    rows = []
    for kind, bidir in [("LSTM", False), ("GRU", False), ("LSTM", True)]:
        name = f"{kind}{' bidirectional' if bidir else ''} train step B64 L64 H256 E128"
        a, b = compare(*training_step(kind, bidirectional=bidir), number=number, repeats=repeats, warmup=1)
        rows.append((name, a, b))
    print_table("Recurrent classifier training step (median)", rows, unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
