"""TransformerEncoderLayer training step (forward + backward, train mode with dropout 0.1):
nnforge vs PyTorch on the CPU, alternated, median times and the nnforge/torch ratio.

Default shape: d_model 384, nhead 12, dim_feedforward 1536, batch 16, seq 128, gelu, batch_first
(a MiniLM/BERT-small sized layer). ``--profile`` prints nnforge's cProfile top entries instead.

    python benchmarks/bench_transformer.py [--repeats 7] [--number 3] [--threads N] [--profile]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse

import numpy as np
import torch

import nnforge as nf

try:
    from benchmarks.common import compare, print_profile, machine, print_table, set_threads
except ImportError:  # run as a script from benchmarks/
    from common import compare, print_profile, machine, print_table, set_threads


def build(args: argparse.Namespace) -> tuple:
    kw = dict(dim_feedforward=args.ff, dropout=args.dropout, activation="gelu", batch_first=True)
    t = torch.nn.TransformerEncoderLayer(args.d_model, args.nhead, **kw).train()
    m = nf.nn.TransformerEncoderLayer(args.d_model, args.nhead, **kw).train()
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.d_model), dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    nx, ng, tx, tg = nf.tensor(x), nf.tensor(g), torch.tensor(x), torch.tensor(g)

    def nf_step() -> None:
        for p in m.parameters():
            p.grad = None
        m(nx).backward(ng)

    def torch_step() -> None:
        for p in t.parameters():
            p.grad = None
        t(tx).backward(tg)

    return nf_step, torch_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--nhead", type=int, default=12)
    ap.add_argument("--ff", type=int, default=1536)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    nf_step, torch_step = build(args)
    if args.profile:
        print_profile(nf_step, args.number)
        return
    a, b = compare(nf_step, torch_step, number=args.number, repeats=args.repeats)
    print(machine() + f", torch threads {threads}")
    print_table(f"TransformerEncoderLayer train step (d={args.d_model}, h={args.nhead}, ff={args.ff}, "
                f"N={args.batch}, L={args.seq}, gelu, dropout={args.dropout})",
                [("forward + backward", a, b)], unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
