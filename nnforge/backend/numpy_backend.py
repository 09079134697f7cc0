"""The CPU backend: NumPy arrays, NumPy's random generator, and fused kernels where NumPy lacks them."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable

import numpy as np

from .blas import add_matmul_nt, can_add_matmul_nt
from .erf import erf
from .worker_pool import WorkerPool, current_cpu, worker_thread


class NumpyBackend:
    """Everything ops need from an array library, for NumPy on the CPU.

    A GPU backend mirrors this class with ``xp = cupy`` and ``name = "cuda"``.
    """

    name = "cpu"
    xp = np
    ndarray = np.ndarray

    # -- conversions ---------------------------------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None) -> np.ndarray:
        return np.asarray(data, dtype=dtype)

    def array(self, data: Any, dtype: Any = None) -> np.ndarray:
        """A fresh copy (torch.tensor(data) always copies)."""
        return np.array(data, dtype=dtype, copy=True)

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def is_owned(self, a: np.ndarray) -> bool:
        """True when ``a`` is a standalone writeable array (not a view, not a read-only broadcast)."""
        return a.base is None and a.flags.writeable

    # -- kernels that NumPy has no single function for ---------------------------------------------
    def erf(self, x: np.ndarray) -> np.ndarray:
        k = self.kernels_for(x)
        return k.erf(x) if k is not None else erf(x)

    #: use the compiled float32 kernels when numba is installed (``NNFORGE_FAST_KERNELS=0`` turns them off)
    use_fast_kernels: bool = os.environ.get("NNFORGE_FAST_KERNELS", "1") != "0"

    def kernels_for(self, *arrays: Any) -> Any:
        """The compiled kernels (``FastKernels``) when they can serve these arrays (all float32 and
        C-contiguous, numba installed, not switched off), else None: the caller takes its NumPy path."""
        if not self.use_fast_kernels:
            return None
        for a in arrays:  # ``is`` first: most float32 arrays share one dtype object (not unpickled ones), and
            # comparing dtypes is slow when the caches are cold after a large op
            if a is not None and ((a.dtype is not _FLOAT32 and a.dtype != _FLOAT32) or not a.flags.c_contiguous):
                return None
        return _fast_kernels(self)

    #: call the BLAS GEMM directly where NumPy cannot express it (``NNFORGE_DIRECT_BLAS=0`` turns it off)
    use_direct_blas: bool = os.environ.get("NNFORGE_DIRECT_BLAS", "1") != "0"

    def linear(self, x2: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """``x2 @ w.T + b`` for x2 (M, K), w (N, K), b (N,) or None, all of one dtype. With a bias, the
        output starts as the bias and the GEMM adds the product to it (one pass over the output, not two)."""
        if b is not None and self.use_direct_blas and can_add_matmul_nt(x2, w):
            out = np.empty((x2.shape[0], w.shape[0]), dtype=x2.dtype)
            if out.size >= _PARALLEL_ELEMENTWISE:  # split over the cores: 4096 x 1152 0.9-1.1 -> 0.6 ms
                self.run_parts([functools.partial(np.copyto, out[rows], b) for rows in self.part_slices(out.shape[0])])
            else:
                out[...] = b
            add_matmul_nt(x2, w, out)
            return out
        out = np.matmul(x2, w.T)
        if b is not None:
            out += b
        return out

    def binary(self, ufunc: Any, a: Any, b: Any, out: np.ndarray | None = None) -> Any:
        """``ufunc(a, b)`` (a NumPy binary ufunc; into ``out`` if given). A large C-contiguous float array with,
        as the other operand, one of its shape and dtype or a single value (a Python number, a one-element
        array of its dtype, or a zero-stride broadcast such as a sum's gradient) is split into one contiguous
        part per core: NumPy runs a ufunc on one thread, and on arrays of a few MB (cache-resident) two
        threads are ~1.3x faster (add of 4M float32: 1.14-1.38 -> 1.07 ms, torch's 1.08-1.13 ms)."""
        small = _PARALLEL_ELEMENTWISE  # the common case first, at the least cost: tiny tensors' ops
        if getattr(a, "size", 0) < small and getattr(b, "size", 0) < small:
            return ufunc(a, b) if out is None else ufunc(a, b, out=out)
        parts = self._split_operands(a, b)
        if parts is not None and out is not None and not (out.shape == parts[0].shape and out.dtype == parts[0].dtype
                                                          and out.flags.c_contiguous and not _overlaps(parts, out)):
            parts = None  # an input overlapping out other than exactly: NumPy copies it first, split calls would race
        if parts is None:
            return ufunc(a, b) if out is None else ufunc(a, b, out=out)
        ref, fa, fb = parts
        fresh = out is None
        if fresh:
            out = np.empty_like(ref)
        fo = out.reshape(-1)
        kernels = self.kernels_for(ref)
        if kernels is not None and kernels.binary_split(ufunc, fa, fb, fo, fresh):
            return out
        slices = self.part_slices(fo.size)
        calls = [functools.partial(ufunc, _piece(fa, sl), _piece(fb, sl), out=fo[sl]) for sl in slices]
        tasks = kernels.binary_tasks(ufunc, fa, fb, fo, slices, calls) if kernels is not None else None
        self.run_parts(calls if tasks is None else tasks)
        return out

    def unary(self, ufunc: Any, a: Any) -> Any:
        """``ufunc(a)`` for a NumPy ufunc whose result has ``a``'s dtype (exp, log, sqrt, ...): a large
        C-contiguous float array is split into one part per core, as in ``binary``."""
        if getattr(a, "size", 0) < _PARALLEL_ELEMENTWISE or not self._splittable(a):
            return ufunc(a)
        out = np.empty_like(a)
        fa, fo = a.reshape(-1), out.reshape(-1)
        self.run_parts([functools.partial(ufunc, fa[sl], out=fo[sl]) for sl in self.part_slices(fa.size)])
        return out

    def _splittable(self, a: Any) -> bool:
        return (self.num_threads > 1 and type(a) is np.ndarray and a.size >= _PARALLEL_ELEMENTWISE
                and a.dtype.kind == "f" and a.flags.c_contiguous)

    def _split_operands(self, a: Any, b: Any) -> tuple | None:
        """(the full array, a and b each flat or as a single value) when ``binary`` can split ``a op b``."""
        for ref, other in ((a, b), (b, a)):
            if self._splittable(ref):
                flat = _flat_operand(other, ref)
                if flat is not None:
                    return (ref, ref.reshape(-1), flat) if ref is a else (ref, flat, ref.reshape(-1))
        return None

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        """1/(1+exp(-x)) without overflow warnings: exp of -|x| only."""
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0, e)
        out = out.astype(x.dtype, copy=False)
        e += 1
        out /= e
        return out

    #: threads for ``parallel_for`` (the cores this process may run on)
    num_threads: int = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def parallel_for(self, n: int, fn: Callable[[slice], None], grain: int = 1, pin_blas: bool = True) -> None:
        """Call ``fn(slice)`` over ``range(n)`` in slices of ``grain`` items, one contiguous share of them per
        core, concurrently, with BLAS pinned to one thread meanwhile: for batches of small GEMMs (attention),
        where one thread per share beats BLAS threading inside each tiny GEMM (and degrades far less on a
        busy machine), and a small ``grain`` keeps each slice's temporaries in that core's cache.
        ``fn`` must release the GIL to gain (NumPy's matmul and the compiled kernels do); its exceptions
        propagate; a nested call runs serially. ``pin_blas=False`` for work that makes no BLAS calls (saves
        the two thread-count changes)."""
        def share(start: int, stop: int) -> None:
            for i in range(start, stop, grain):
                fn(slice(i, min(i + grain, stop)))

        parts = self.part_slices(n)
        with self.blas_threads(1) if pin_blas and len(parts) > 1 else contextlib.nullcontext():
            self.run_parts([functools.partial(share, sl.start, sl.stop) for sl in parts])

    def part_slices(self, n: int) -> list[slice]:
        """One contiguous slice of ``range(n)`` per core, in order: a single one for n < 2, on one core, or
        inside a pool thread (a nested split has no thread to spare)."""
        k = min(self.num_threads, n)
        if k <= 1 or getattr(worker_thread, "is_worker", False):
            return [slice(0, n)]
        return [slice(n * i // k, n * (i + 1) // k) for i in range(k)]

    def run_parts(self, calls: list[Callable[[], Any]]) -> None:
        """Run the zero-argument ``calls`` at once, one on this thread and the others on the pool's workers
        (one call per core at most, e.g. one per ``part_slices`` slice); exceptions propagate, a nested call
        runs them one after another. This thread takes call ``cpu % len(calls)`` of the CPU it runs on, as
        ``numba_tasks.run_split`` takes its piece: a part of an array stays with one CPU's caches from op to op,
        whichever thread the scheduler put there. A ``functools.partial`` of a GIL-releasing kernel over pre-sliced
        arrays keeps the Python that either thread runs between the hand-off and the kernel short (512K-element
        ``x**3`` / erf, paired medians: 0.72-0.79x / 0.85-0.90x the time of a lambda per slice through
        ``parallel_for``; at 4M elements no difference)."""
        if len(calls) == 1 or getattr(worker_thread, "is_worker", False):
            for call in calls:
                call()
            return
        workers = self.num_threads - 1
        own = max(current_cpu(), 0) % len(calls)
        (_POOLS.get(workers) or _pool(workers)).run(calls[:own] + calls[own + 1:], calls[own])

    def run_split(self, op: int, x: np.ndarray, y: np.ndarray, out: np.ndarray, flag: int = 0,
                  scalar: np.float32 = np.float32(0.0), loop: tuple[int, int] = (0, 0)) -> bool:
        """A compiled operation (``numba_tasks``) over flat float32 arrays, one piece per core in one compiled
        call (``WorkerPool.run_split``); False, with nothing done, when that cannot be (one core, a pool thread,
        a worker not polling): the caller then takes ``run_parts``."""
        workers = self.num_threads - 1
        if workers < 1 or getattr(worker_thread, "is_worker", False):
            return False
        return (_POOLS.get(workers) or _pool(workers)).run_split(op, x, y, out, flag, scalar, loop)

    def blas_threads(self, n: int) -> Any:
        """Context manager limiting BLAS to ``n`` threads: inside ``parallel_for`` and for single-row GEMMs in
        decoding, where thread hand-offs cost more than they save; a no-op without threadpoolctl. (Recurrent
        layers' (batch x hidden) GEMMs gained from two threads once OpenBLAS stopped spinning, 155 -> 109 ms
        per LSTM step, so they are not pinned.)"""
        ctl = _blas_controller()
        return ctl.limit(limits=n, user_api="blas") if ctl is not None else contextlib.nullcontext()

    # -- randomness ------------------------------------------------------------------------------
    def default_generator(self, seed: int | None = None) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(seed))


_POOL_PREFIX = "nnforge-pool"
_FLOAT32 = np.dtype(np.float32)
_PARALLEL_ELEMENTWISE = 3 << 17  # elements: below this an elementwise op stays on one thread (split breaks even ~300K)


def _flat_operand(x: Any, ref: np.ndarray) -> Any:
    """``x`` as the other operand of ``ref`` in a split binary op: a flat view when it has ref's shape, dtype
    and layout, a single value when it is one (a Python number, or an array of ref's dtype holding one value:
    one element that broadcasts to ref's shape, or a zero-stride broadcast of ref's shape); else None. Values
    keep ref's dtype, so the result's dtype is NumPy's for the unsplit op."""
    if type(x) in (int, float):
        return x
    if type(x) is not np.ndarray or x.dtype != ref.dtype:
        return None
    if x.shape == ref.shape:
        if x.flags.c_contiguous:
            return x.reshape(-1)
        return x[(0,) * x.ndim] if x.size and not any(x.strides) else None
    if x.size == 1 and x.ndim <= ref.ndim:
        return x.reshape(())[()]
    return None


def _piece(v: Any, sl: slice) -> Any:
    """A split operand's part: a slice of a flat array, a single value whole."""
    return v[sl] if type(v) is np.ndarray else v


def _overlaps(parts: tuple, out: np.ndarray) -> bool:
    """Whether an array among ``binary``'s split operands shares memory with ``out`` other than as the same flat
    array (an in-place op's input is fine: each element is read before it is written, by the same thread)."""
    start = out.__array_interface__["data"][0]
    return any(type(v) is np.ndarray and np.may_share_memory(v, out)
               and (v.__array_interface__["data"][0] != start or v.size != out.size) for v in parts[1:])


@functools.cache
def _thread_pool(workers: int, pid: int) -> WorkerPool:
    """The pool of this process (keyed by pid: a forked child, e.g. a DataLoader worker, has no live
    threads in its parent's pool and gets its own)."""
    return WorkerPool(workers, _POOL_PREFIX)


# this process's pools by worker count, for the per-op lookup without a getpid() call: emptied in a forked child,
# which then gets its own from _thread_pool
_POOLS: dict[int, WorkerPool] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOLS.clear)


def _pool(workers: int) -> WorkerPool:
    pool = _POOLS[workers] = _thread_pool(workers, os.getpid())
    return pool


@functools.cache
def _fast_kernels(backend: Any) -> Any:
    """FastKernels (compiled with numba on first use, cached on disk), or None without numba."""
    try:
        from .fast_kernels import FastKernels
    except ImportError:
        return None
    return FastKernels(backend)


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (built once), or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
