"""Timing helpers shared by the benchmarks: nnforge and PyTorch alternate within one run so that both see
the same machine state, and each reports the median of several repeats."""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def set_threads(n: int | None = None) -> int:
    """Use the same number of threads for both frameworks (all cores by default): torch's intra-op pool and,
    through threadpoolctl when installed, the BLAS under NumPy (nnforge's matmuls)."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return n
    threadpool_limits(n, user_api="blas")
    return n


def gemm_peak_gflops(n: int = 2048, tries: int = 5) -> float:
    """The machine's float32 GEMM peak as NumPy's BLAS reaches it with the current thread limit: the best of
    ``tries`` (n x n) @ (n x n) products, 2 n^3 flops each, in GFLOP/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: BLAS threads and pages
    best = min(time_call(lambda: np.matmul(a, b, out=out), 1) for _ in range(tries))
    return 2 * n ** 3 / best / 1e9


def time_call(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of ``fn`` averaged over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


SETTLE_S = 0.02  # idle time before each timed block (see compare)


def _alternate(nf_fn: Callable[[], object], torch_fn: Callable[[], object], number: int, repeats: int, warmup: int,
               settle: float, block_warmup: int) -> tuple[list[float], list[float]]:
    """Seconds per call in each of ``repeats`` blocks of ``number`` calls, nnforge's and PyTorch's blocks
    alternating (see ``compare``)."""
    for _ in range(warmup):
        nf_fn()
        torch_fn()
    nf_times, torch_times = [], []
    for _ in range(repeats):
        for fn, times in ((nf_fn, nf_times), (torch_fn, torch_times)):
            time.sleep(settle)
            for _ in range(block_warmup):
                fn()
            times.append(time_call(fn, number))
    return nf_times, torch_times


def compare(nf_fn: Callable[[], object], torch_fn: Callable[[], object], number: int = 10,
            repeats: int = 7, warmup: int = 2, settle: float = 0.0, block_warmup: int = 0) -> tuple[float, float]:
    """Median seconds per call for nnforge and PyTorch, alternating repeats. With ``settle`` (seconds; the
    suite uses ``SETTLE_S``) each timed block starts after that much idle time, for both frameworks alike: the
    worker threads of the one timed before (torch's OpenMP threads, OpenBLAS's) keep spinning for a few ms
    after it returns and would otherwise take a core from the start of the other's block (measured: the LSTM
    step 64-65 ms after a pause, 71 ms right after a torch step). ``block_warmup`` untimed calls start each
    block (after the settle time), so that millisecond ops are timed in their steady state, not while the
    other framework's threads are still spinning or the cores waking up (on 4M-element adds, torch's spinning
    OpenMP threads made nnforge's following block ~1.3x slower)."""
    nf_times, torch_times = _alternate(nf_fn, torch_fn, number, repeats, warmup, settle, block_warmup)
    return statistics.median(nf_times), statistics.median(torch_times)


def compare_paired(nf_fn: Callable[[], object], torch_fn: Callable[[], object], number: int = 10,
                   repeats: int = 7, warmup: int = 2, settle: float = 0.0,
                   block_warmup: int = 0) -> tuple[float, float, float]:
    """``compare``'s two medians and the median over repeats of nnforge's block time over the PyTorch block's
    right after it. Each pair of blocks ran within a fraction of a second, under about the same load from the
    host's other guests, which moves a millisecond op's time 2x within seconds; the ratio of the two medians
    compares blocks from different moments."""
    nf_times, torch_times = _alternate(nf_fn, torch_fn, number, repeats, warmup, settle, block_warmup)
    paired = statistics.median(a / b for a, b in zip(nf_times, torch_times))
    return statistics.median(nf_times), statistics.median(torch_times), paired


def machine() -> str:
    import numpy
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, PyTorch {torch.__version__}")


def print_table(title: str, rows: list[tuple], unit: str = "us", scale: float = 1e6) -> None:
    """rows: (name, nnforge seconds, torch seconds[, ratio]); the ratio, nnforge's time over torch's (below 1
    nnforge is faster), is the two times' quotient unless the row gives it (``compare_paired``)."""
    print(f"\n{title}")
    print(f"| {'workload':<38} | nnforge ({unit}) | torch ({unit}) | ratio nf/torch |")
    print(f"|{'-' * 40}|--------------|------------|----------------|")
    for name, a, b, *ratio in rows:
        print(f"| {name:<38} | {a * scale:12.2f} | {b * scale:10.2f} | {(ratio[0] if ratio else a / b):14.2f} |")


def print_profile(fn: Callable[[], object], number: int, top: int = 25) -> None:
    """Warm ``fn`` up once, then print cProfile's ``top`` entries by own time over ``number`` calls."""
    import cProfile
    import pstats

    fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(number):
        fn()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
