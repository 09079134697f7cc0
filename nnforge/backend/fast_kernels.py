"""Array-level entry points to the compiled float32 kernels (``numba_kernels``), used by ops when
``backend.kernels_for(...)`` offers them; each allocates its outputs and hands flat or (R, C) views to
the compiled loops. The ops keep a pure-NumPy path for everything else (float64, no numba installed,
``NNFORGE_FAST_KERNELS=0``), and the tests check that both paths agree.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import numba_kernels as nk

_PARALLEL_MIN = 1 << 15  # elements: below this, starting the thread pool costs more than it saves


class FastKernels:
    """Compiled kernels for C-contiguous float32 arrays."""

    @staticmethod
    def erf(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        nk.erf(x.reshape(-1), out.reshape(-1))
        return out

    @staticmethod
    def exp(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        nk.exp(x.reshape(-1), out.reshape(-1))
        return out

    @staticmethod
    def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
        out = np.empty_like(x)
        nk.gelu(x.reshape(-1), out.reshape(-1), approximate == "tanh")
        return out

    @staticmethod
    def gelu_grad(g: np.ndarray, x: np.ndarray, approximate: str) -> np.ndarray:
        out = np.empty_like(x)
        nk.gelu_grad(np.ascontiguousarray(g).reshape(-1), x.reshape(-1), out.reshape(-1), approximate == "tanh")
        return out

    @staticmethod
    def softmax_(p: np.ndarray, masked_rows_zero: bool = False, serial: bool = False) -> np.ndarray:
        """Softmax over the last axis of ``p`` in place; returns ``p``. Rows of -inf become 0 with
        ``masked_rows_zero`` (attention), else NaN (as torch.softmax gives). ``serial``: on the calling
        thread only (inside ``backend.parallel_for``)."""
        kernel = nk.softmax_rows_serial_ if serial else nk.softmax_rows_
        kernel(p.reshape(-1, p.shape[-1]), np.float32(0.0 if masked_rows_zero else np.nan))
        return p

    @staticmethod
    def masked_softmax_serial_(p: np.ndarray, mask: np.ndarray) -> bool:
        """Attention's ``p += mask`` and softmax over the last axis in one pass, on the calling thread, when
        the mask is a contiguous block that repeats along ``p``'s rows (its shape, leading 1s dropped, is a
        suffix of ``p``'s); returns False (nothing done) otherwise."""
        shape = mask.shape
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
        if mask.dtype != np.float32 or not mask.flags.c_contiguous or p.shape[len(p.shape) - len(shape):] != shape:
            return False
        c = p.shape[-1]
        nk.masked_softmax_rows_serial_(p.reshape(-1, c), mask.reshape(-1, c))
        return True

    @staticmethod
    def softmax_with_stats(x2: np.ndarray) -> tuple:
        """(softmax, row max, row sum of exp(x - max)) of an (R, C) array; the last two of shape (R,)."""
        r = x2.shape[0]
        p, m, s = np.empty_like(x2), np.empty(r, np.float32), np.empty(r, np.float32)
        nk.softmax_stats_rows(x2, p, m, s)
        return p, m, s

    @staticmethod
    def softmax_grad(g: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty_like(y)
        c = y.shape[-1]
        nk.softmax_grad_rows(np.ascontiguousarray(g).reshape(-1, c), y.reshape(-1, c), out.reshape(-1, c))
        return out

    @staticmethod
    def layer_norm(x2: np.ndarray, w: Any, b: Any, eps: float) -> tuple:
        """(out, xhat, rstd) for an (R, D) input; ``w``/``b`` of length D or None."""
        r, d = x2.shape
        w = np.ones(d, np.float32) if w is None else np.ascontiguousarray(w.reshape(-1), np.float32)
        b = np.zeros(d, np.float32) if b is None else np.ascontiguousarray(b.reshape(-1), np.float32)
        out, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty((r, 1), np.float32)
        nk.layer_norm(x2, w, b, np.float32(eps), out, xhat, rstd.reshape(-1))
        return out, xhat, rstd

    @staticmethod
    def layer_norm_grad(g2: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, w: Any, need_x: bool) -> tuple:
        """(gx or None, gw, gb) for an (R, D) upstream gradient."""
        r, d = xhat.shape
        w = np.ones(d, np.float32) if w is None else np.ascontiguousarray(w.reshape(-1), np.float32)
        chunks = max(1, min(nk.threads(), r))
        partial_w, partial_b = np.zeros((chunks, d), np.float32), np.zeros((chunks, d), np.float32)
        gx = np.empty_like(xhat) if need_x else np.empty((0, d), np.float32)
        nk.layer_norm_grad(np.ascontiguousarray(g2), xhat, rstd.reshape(-1), w, gx, partial_w, partial_b, need_x)
        return (gx if need_x else None), partial_w.sum(axis=0), partial_b.sum(axis=0)

    @staticmethod
    def adam_step(x: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, beta1: float, beta2: float,
                  step_size: float, bc2_sqrt: float, eps: float, decay: float, l2: float, maximize: bool) -> None:
        """Adam/AdamW update of ``x``, ``m``, ``v`` in place, one pass over memory (threads for large arrays)."""
        kernel = nk.adam_step if x.size >= _PARALLEL_MIN else nk.adam_step_serial
        f = np.float32
        kernel(x.reshape(-1), np.ascontiguousarray(g, np.float32).reshape(-1), m.reshape(-1), v.reshape(-1),
               f(beta1), f(beta2), f(step_size), f(bc2_sqrt), f(eps), f(decay), f(l2), f(-1.0 if maximize else 1.0))
