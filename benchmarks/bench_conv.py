"""Conv2d forward+backward and a Fashion-MNIST CNN training step: nnforge vs PyTorch on the CPU.

Runs the two frameworks alternately (so background load hits both alike) and prints median times and the
nnforge/torch ratio. Both use float32 and the same number of threads: ``--threads N`` sets it for both
(OpenBLAS under NumPy and torch's intra-op pool); by default each library uses its own default.

    python benchmarks/bench_conv.py [--repeats 15] [--batch-size 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if __name__ == "__main__":  # thread counts must be set before NumPy/OpenBLAS start
    _args = sys.argv[1:]
    if "--threads" in _args:
        for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[_var] = _args[_args.index("--threads") + 1]

import nnforge as nf  # noqa: E402  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import numpy as np  # noqa: E402
import torch  # noqa: E402


CLOCK = time.perf_counter


def _median_ms(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return statistics.median(ts) * 1e3


def _alternate(nf_fn, torch_fn, repeats: int) -> tuple:
    """Median ms of each, measured in interleaved rounds after one warm-up call each."""
    nf_fn(), torch_fn()
    a, b = [], []
    for _ in range(repeats):
        a.append(_median_ms(nf_fn, 1))
        b.append(_median_ms(torch_fn, 1))
    return statistics.median(a), statistics.median(b)


def conv_case(n: int, c: int, h: int, w: int, o: int, k: int, stride: int, padding: int, groups: int = 1):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    tconv = torch.nn.Conv2d(c, o, k, stride=stride, padding=padding, groups=groups)
    nconv = nf.nn.Conv2d(c, o, k, stride=stride, padding=padding, groups=groups)
    nconv.load_state_dict({k_: v.detach().numpy() for k_, v in tconv.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    xn = nf.tensor(x, requires_grad=True)

    def run_torch():
        xt.grad = None
        tconv.zero_grad()
        tconv(xt).sum().backward()

    def run_nf():
        xn.grad = None
        nconv.zero_grad()
        nconv(xn).sum().backward()

    return run_nf, run_torch


def _cnn(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 10))


def cnn_step_case(batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    tm = _cnn(torch)
    nm = _cnn(nf)
    nm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    nopt = nf.optim.Adam(nm.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xn, yn = nf.from_numpy(x), nf.from_numpy(y)

    def run_torch():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tm(xt), yt).backward()
        topt.step()

    def run_nf():
        nopt.zero_grad()
        nf.nn.functional.cross_entropy(nm(xn), yn).backward()
        nopt.step()

    return run_nf, run_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: theirs)")
    ap.add_argument("--only-cnn", action="store_true", help="time only the CNN training step")
    ap.add_argument("--cpu-time", action="store_true",
                    help="process CPU time instead of wall time (robust on a busy machine; use with --threads 1)")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    b = args.batch_size
    cases = [
        ("conv 1->32 3x3 p1, 28x28", conv_case(b, 1, 28, 28, 32, 3, 1, 1)),
        ("conv 32->64 3x3 p1, 14x14", conv_case(b, 32, 14, 14, 64, 3, 1, 1)),
        ("conv 64->128 3x3 s2 p1, 16x16", conv_case(b // 2, 64, 16, 16, 128, 3, 2, 1)),
        ("conv 3->16 5x5, 32x32", conv_case(b // 2, 3, 32, 32, 16, 5, 1, 0)),
        ("depthwise 64 3x3 p1, 16x16", conv_case(b // 2, 64, 16, 16, 64, 3, 1, 1, groups=64)),
        (f"CNN train step (batch {b}, Adam)", cnn_step_case(b)),
    ]
    if args.only_cnn:
        cases = cases[-1:]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} alternated runs, "
          f"{'CPU' if args.cpu_time else 'wall'} time")
    print(f"{'case (forward+backward)':<36} {'nnforge ms':>11} {'torch ms':>9} {'ratio':>6}")
    for name, (nf_fn, torch_fn) in cases:
        a, t = _alternate(nf_fn, torch_fn, args.repeats)
        print(f"{name:<36} {a:>11.2f} {t:>9.2f} {a / t:>6.2f}")


if __name__ == "__main__":
    main()
