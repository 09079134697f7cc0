"""Per-op autograd overhead on tiny tensors and throughput on large ones: nnforge vs PyTorch CPU.

Run: ``python benchmarks/bench_ops.py`` (``--quick`` for fewer repeats). Prints markdown tables; ratios
below 1 mean nnforge is faster.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# nnforge before NumPy, as the README asks and `python -m benchmarks` does: OpenBLAS reads nnforge's defaults
# (threads that stop spinning right after a GEMM) only when it loads. Loaded after NumPy, OpenBLAS's threads
# spun ~0.1 s after each GEMM and the gradient adds that followed a matmul's backward GEMMs waited for the cores
# (the second add 2.9-3.1 ms instead of 0.17-0.20).
import nnforge as nf  # noqa: E402

# isort: split

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import SETTLE_S, compare, compare_paired, machine, print_table, set_threads  # noqa: E402


def _pair(shape: tuple, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    nfs = [nf.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    return nfs, ts


def tiny_overhead(number: int, repeats: int) -> list:
    """Forward + backward of one op on 4x4 tensors: what the framework adds around a trivial kernel."""
    (a, b), (ta, tb) = _pair((4, 4))
    ops = {
        "add": lambda x, y: x + y,
        "mul": lambda x, y: x * y,
        "matmul": lambda x, y: x @ y,
        "exp": lambda x, y: x.exp(),
        "sum": lambda x, y: x.sum(),
        "mean(dim)": lambda x, y: x.mean(dim=1),
        "reshape": lambda x, y: x.reshape(16),
        "transpose": lambda x, y: x.transpose(0, 1),
        "getitem": lambda x, y: x[1:3],
        "softmax": lambda x, y: (nf.softmax(x, -1) if isinstance(x, nf.Tensor) else torch.softmax(x, -1)),
    }
    rows = []
    for name, op in ops.items():
        def run_nf(op=op):
            out = op(a, b)
            out.backward(nf.ones_like(out))

        def run_torch(op=op):
            out = op(ta, tb)
            out.backward(torch.ones_like(out))

        rows.append((f"{name} fwd+bwd 4x4", *compare(run_nf, run_torch, number, repeats)))

    def chain_nf():
        ((a * b + a).exp().sum()).backward()

    def chain_torch():
        ((ta * tb + ta).exp().sum()).backward()

    rows.append(("chain of 4 ops fwd+bwd 4x4 (per op)", *(t / 4 for t in compare(chain_nf, chain_torch, number,
                                                                                  repeats))))
    return rows


def large_throughput(number: int, repeats: int) -> list:
    n = 4_000_000
    (a, b), (ta, tb) = _pair((n,))
    a_, b_ = a.detach(), b.detach()
    ta_, tb_ = ta.detach(), tb.detach()
    (m1, m2), (tm1, tm2) = _pair((1024, 1024), seed=1)
    m1_, m2_, tm1_, tm2_ = m1.detach(), m2.detach(), tm1.detach(), tm2.detach()
    (r,), (tr,) = [x[:1] for x in _pair((4096, 1024), seed=2)]
    r_, tr_ = r.detach(), tr.detach()
    cases = [
        ("add 4M", lambda: a_ + b_, lambda: ta_ + tb_),
        ("mul 4M", lambda: a_ * b_, lambda: ta_ * tb_),
        ("x*x*x (cube) 4M", lambda: a_ * a_ * a_, lambda: ta_ * ta_ * ta_),
        ("x**3 4M", lambda: a_ ** 3, lambda: ta_ ** 3),
        ("exp 4M", lambda: a_.exp(), lambda: ta_.exp()),
        ("tanh 4M", lambda: a_.tanh(), lambda: ta_.tanh()),
        ("erf 4M", lambda: a_.erf(), lambda: ta_.erf()),
        ("gelu 4M", lambda: nf.nn.functional.gelu(a_), lambda: torch.nn.functional.gelu(ta_)),
        ("sum 4096x1024", lambda: r_.sum(), lambda: tr_.sum()),
        ("sum(dim=-1) 4096x1024", lambda: r_.sum(dim=-1), lambda: tr_.sum(dim=-1)),
        ("amax(dim=-1) 4096x1024", lambda: r_.amax(dim=-1), lambda: tr_.amax(dim=-1)),
        ("softmax(dim=-1) 4096x1024", lambda: nf.softmax(r_, -1), lambda: torch.softmax(tr_, -1)),
        ("matmul 1024^3", lambda: m1_ @ m2_, lambda: tm1_ @ tm2_),
    ]
    # each block starts with one untimed call, after the suite's idle time (see common.compare). It was 5 ms here,
    # but after one 4M-element op torch's OpenMP thread goes on running for 5-9 ms (CPU time read from
    # /proc/self/task/*/schedstat), a core taken from the start of nnforge's next block but never the other way
    # round (nnforge's worker polls for at most ~2 ms): 4M x**3 measured 0.94x torch's time with 20 ms, 1.15x
    # with 5 ms in the same kind of alternating run.
    rows = [(name, *compare_paired(f, g, number, repeats, settle=SETTLE_S, block_warmup=1)) for name, f, g in cases]

    def mm_fb():
        (m1 @ m2).backward(nf.ones(1024, 1024))

    def tmm_fb():
        (tm1 @ tm2).backward(torch.ones(1024, 1024))

    def mul_fb():
        (a * b).sum().backward()

    def tmul_fb():
        (ta * tb).sum().backward()

    # the same block protocol as the forward rows (they had none: each block began while the other framework's
    # threads still spun, e.g. torch's OpenMP threads for a few ms after its block)
    for name, f, g in (("matmul 1024^3 fwd+bwd", mm_fb, tmm_fb), ("mul+sum 4M fwd+bwd", mul_fb, tmul_fb)):
        rows.append((name, *compare_paired(f, g, max(number // 4, 1), repeats, settle=SETTLE_S, block_warmup=1)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(f"machine: {machine()}; torch threads: {threads}")
    number, repeats = (200, 3) if args.quick else (1000, 7)
    print_table("Tiny tensors: per-op overhead, forward + backward", tiny_overhead(number, repeats))
    # large ops: many short alternating blocks. One block's time moves 2-3x within seconds on a shared host
    # (L3 and memory bandwidth taken by other guests), so 7 blocks of 50 calls left each median at the mercy
    # of a few blocks; 21 of 20 calls sample the host's states about evenly for both frameworks.
    print_table("Large tensors: throughput (forward only unless noted)",
                large_throughput(*((3, 3) if args.quick else (20, 21))), unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
