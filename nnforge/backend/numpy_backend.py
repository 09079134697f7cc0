"""The CPU backend: NumPy arrays, NumPy's random generator, and fused kernels where NumPy lacks them."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import numpy as np

from .erf import erf


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
        for a in arrays:
            if a is not None and (a.dtype != np.float32 or not a.flags.c_contiguous):
                return None
        return _fast_kernels()

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        """1/(1+exp(-x)) without overflow warnings: exp of -|x| only."""
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0, e)
        out = out.astype(x.dtype, copy=False)
        e += 1
        out /= e
        return out

    def blas_threads(self, n: int) -> Any:
        """Context manager limiting BLAS to ``n`` threads, for loops of small GEMMs (recurrent layers) where
        thread hand-offs cost more than they save; a no-op when threadpoolctl is not installed."""
        ctl = _blas_controller()
        return ctl.limit(limits=n, user_api="blas") if ctl is not None else contextlib.nullcontext()

    # -- randomness ------------------------------------------------------------------------------
    def default_generator(self, seed: int | None = None) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(seed))


@functools.cache
def _fast_kernels() -> Any:
    """FastKernels (compiled with numba on first use, cached on disk), or None without numba."""
    try:
        from .fast_kernels import FastKernels
    except ImportError:
        return None
    return FastKernels()


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (built once), or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
