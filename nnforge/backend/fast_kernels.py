"""Array-level entry points to the compiled float32 kernels (``numba_kernels``), used by ops when
``backend.kernels_for(...)`` offers them; each allocates its outputs, and large arrays are split into one
contiguous share per core on the backend's thread pool (the kernels release the GIL). The ops keep a
pure-NumPy path for everything else (float64, no numba installed, ``NNFORGE_FAST_KERNELS=0``), and the
tests check that both paths agree.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import numba_kernels as nk

_PARALLEL_MIN = 1 << 15  # elements: below this, handing work to other threads costs more than it saves


class FastKernels:
    """Compiled kernels for C-contiguous float32 arrays; ``backend`` provides ``parallel_for``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def _split(self, n: int, size: int, fn: Callable[[slice], None], serial: bool = False) -> None:
        """``fn`` over ``range(n)`` (items of ``size`` elements in all): in one call when small or ``serial``
        (already inside ``parallel_for``), else one share per core."""
        if serial or size < _PARALLEL_MIN or n < 2:
            fn(slice(0, n))
            return
        k = self.backend.num_threads
        self.backend.parallel_for(n, fn, grain=-(-n // k), pin_blas=False)

    def _map(self, kernel: Callable, out: np.ndarray, *arrays: Any) -> np.ndarray:
        """``kernel(*flat_inputs, flat_out, *scalars)`` over matching pieces of flat arrays; scalars pass
        through."""
        flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in arrays]
        o = out.reshape(-1)
        n_arrays = sum(isinstance(a, np.ndarray) for a in arrays)
        self._split(o.size, o.size, lambda sl: kernel(*(a[sl] for a in flat[:n_arrays]), o[sl],
                                                      *flat[n_arrays:]))
        return out

    def cube(self, a: np.ndarray) -> np.ndarray:
        return self._map(nk.cube, np.empty_like(a), a)

    def erf(self, x: np.ndarray) -> np.ndarray:
        return self._map(nk.erf, np.empty_like(x), x)

    def exp(self, x: np.ndarray) -> np.ndarray:
        """The compiled ``_exp`` that softmax and GELU use inside their loops, exposed for its accuracy test
        (for ``Tensor.exp`` itself NumPy's SIMD exp is as fast, so ops do not call this)."""
        return self._map(nk.exp, np.empty_like(x), x)

    def gelu(self, x: np.ndarray, approximate: str) -> np.ndarray:
        return self._map(nk.gelu, np.empty_like(x), x, approximate == "tanh")

    def gelu_grad(self, g: np.ndarray, x: np.ndarray, approximate: str) -> np.ndarray:
        return self._map(nk.gelu_grad, np.empty_like(x), np.ascontiguousarray(g), x, approximate == "tanh")

    def softmax(self, x: np.ndarray) -> np.ndarray:
        """Softmax over the last axis into a new array (rows of -inf become NaN, as in torch)."""
        out = np.empty_like(x)
        c = x.shape[-1]
        x2, o2, fill = x.reshape(-1, c), out.reshape(-1, c), np.float32(np.nan)
        self._split(x2.shape[0], x2.size, lambda sl: nk.softmax_rows(x2[sl], o2[sl], fill))
        return out

    def softmax_(self, p: np.ndarray, masked_rows_zero: bool = False, serial: bool = False) -> np.ndarray:
        """Softmax over the last axis of ``p`` in place; returns ``p``. Rows of -inf become 0 with
        ``masked_rows_zero`` (attention), else NaN (as torch.softmax gives). ``serial``: on the calling
        thread only (inside ``backend.parallel_for``)."""
        p2 = p.reshape(-1, p.shape[-1])
        fill = np.float32(0.0 if masked_rows_zero else np.nan)
        self._split(p2.shape[0], p2.size, lambda sl: nk.softmax_rows_(p2[sl], fill), serial)
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
        nk.masked_softmax_rows_(p.reshape(-1, c), mask.reshape(-1, c))
        return True

    def softmax_with_stats(self, x2: np.ndarray) -> tuple:
        """(softmax, row max, row sum of exp(x - max)) of an (R, C) array; the last two of shape (R,)."""
        r = x2.shape[0]
        p, m, s = np.empty_like(x2), np.empty(r, np.float32), np.empty(r, np.float32)
        self._split(r, x2.size, lambda sl: nk.softmax_stats_rows(x2[sl], p[sl], m[sl], s[sl]))
        return p, m, s

    def softmax_grad(self, g: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty_like(y)
        c = y.shape[-1]
        g2, y2, o2 = np.ascontiguousarray(g).reshape(-1, c), y.reshape(-1, c), out.reshape(-1, c)
        self._split(y2.shape[0], y2.size, lambda sl: nk.softmax_grad_rows(g2[sl], y2[sl], o2[sl]))
        return out

    def layer_norm(self, x2: np.ndarray, w: Any, b: Any, eps: float) -> tuple:
        """(out, xhat, rstd) for an (R, D) input; ``w``/``b`` of length D or None."""
        r, d = x2.shape
        w = np.ones(d, np.float32) if w is None else np.ascontiguousarray(w.reshape(-1), np.float32)
        b = np.zeros(d, np.float32) if b is None else np.ascontiguousarray(b.reshape(-1), np.float32)
        out, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty((r, 1), np.float32)
        r1, e = rstd.reshape(-1), np.float32(eps)
        self._split(r, x2.size, lambda sl: nk.layer_norm(x2[sl], w, b, e, out[sl], xhat[sl], r1[sl]))
        return out, xhat, rstd

    def layer_norm_grad(self, g2: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, w: Any, need_x: bool) -> tuple:
        """(gx or None, gw, gb) for an (R, D) upstream gradient."""
        r, d = xhat.shape
        w = np.ones(d, np.float32) if w is None else np.ascontiguousarray(w.reshape(-1), np.float32)
        g2 = np.ascontiguousarray(g2)
        gx = np.empty_like(xhat) if need_x else np.empty((r, d), np.float32)
        r1 = rstd.reshape(-1)
        partial: list = []  # one (sum of g * xhat, sum of g) pair per share of rows

        def rows(sl: slice) -> None:
            sums = np.zeros((2, d), np.float32)
            nk.layer_norm_grad(g2[sl], xhat[sl], r1[sl], w, gx[sl], sums[0], sums[1], need_x)
            partial.append(sums)  # list.append is atomic under the GIL

        self._split(r, xhat.size, rows)
        total = partial[0] if len(partial) == 1 else np.sum(partial, axis=0)
        return (gx if need_x else None), total[0], total[1]

    def adam_step(self, x: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, beta1: float, beta2: float,
                  step_size: float, bc2_sqrt: float, eps: float, decay: float, l2: float, maximize: bool) -> None:
        """Adam/AdamW update of ``x``, ``m``, ``v`` in place, one pass over memory."""
        f = np.float32
        flat = [x.reshape(-1), np.ascontiguousarray(g, np.float32).reshape(-1), m.reshape(-1), v.reshape(-1)]
        scalars = (f(beta1), f(beta2), f(step_size), f(bc2_sqrt), f(eps), f(decay), f(l2),
                   f(-1.0 if maximize else 1.0))
        self._split(x.size, x.size, lambda sl: nk.adam_step(*(a[sl] for a in flat), *scalars))

    # -- recurrent layers (numba_rnn_kernels): one timestep minus its GEMM; the ops loop over time ---------
    @property
    def lstm_forward_step(self) -> Callable:
        """The compiled ``lstm_forward_step(gates, rec, bias, c_prev, c, tanh_c, h)`` on (B, 4H) / (B, H)
        C-contiguous float32 rows, gates in torch's order (i, f, g, o): ``gates`` (the step's input projection)
        becomes the activated gates; writes ``c``, ``tanh_c``, ``h``. Returned as is (no wrapper frame per
        timestep)."""
        from . import numba_rnn_kernels as rk
        return rk.lstm_forward_step

    @property
    def lstm_backward_step(self) -> Callable:
        """The compiled ``lstm_backward_step(g_out, dh_rec, dc, gates, c_prev, tanh_c, dpre, dbias)``: the
        step's pre-activation grads into ``dpre``, ``dc`` carried back in place, the bias grad summed in."""
        from . import numba_rnn_kernels as rk
        return rk.lstm_backward_step
