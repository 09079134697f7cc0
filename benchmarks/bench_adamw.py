"""AdamW step over ~22M float32 parameters: nnforge vs torch (foreach=False and torch's default),
alternated run by run; prints the median ms of each and the ratios.

    python benchmarks/bench_adamw.py [--runs 15] [--threads 1]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import time

import numpy as np
import torch

import nnforge as nf

# a BERT-small-like set of shapes, ~22M parameters in total
SHAPES = [(30522, 384)] + [(384, 384)] * 24 + [(1536, 384), (384, 1536)] * 6 + [(384,)] * 40 + [(1536,)] * 6


def _data(shapes: list) -> tuple[list, list]:
    rng = np.random.default_rng(0)
    return ([rng.standard_normal(s, dtype=np.float32) for s in shapes],
            [rng.standard_normal(s, dtype=np.float32) for s in shapes])


def nf_step(arrays: list, grads: list):
    """nnforge AdamW.step over parameters holding ``arrays`` with gradients ``grads``."""
    params = [nf.nn.Parameter(nf.tensor(a)) for a in arrays]
    for p, g in zip(params, grads):
        p.grad = nf.tensor(g)
    return nf.optim.AdamW(params, lr=1e-3).step


def torch_step(arrays: list, grads: list, foreach: bool | None = None):
    """torch AdamW.step over the same parameters and gradients (``foreach=None``: torch's default)."""
    params = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return torch.optim.AdamW(params, lr=1e-3, foreach=foreach).step


def adamw_case(shapes: list = SHAPES) -> tuple:
    """(nnforge step, torch default step) over parameters of ``shapes`` with random gradients."""
    arrays, grads = _data(shapes)
    return nf_step(arrays, grads), torch_step(arrays, grads)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays, grads = _data(SHAPES)
    print(f"{sum(a.size for a in arrays) / 1e6:.1f}M parameters in {len(SHAPES)} tensors, "
          f"torch threads={torch.get_num_threads()}")
    runners = {"nnforge": nf_step(arrays, grads)}
    for name, foreach in (("torch foreach=False", False), ("torch default", None)):
        runners[name] = torch_step(arrays, grads, foreach)

    times: dict = {k: [] for k in runners}
    for fn in runners.values():  # warm up: allocates the state
        fn()
    for _ in range(args.runs):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:22s} {v:8.1f} ms")
    for k, v in med.items():
        if k != "nnforge":
            print(f"ratio nnforge / {k}: {med['nnforge'] / v:.2f}")


if __name__ == "__main__":
    main()
