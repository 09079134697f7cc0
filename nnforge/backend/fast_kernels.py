"""Array-level entry points to the compiled float32 kernels (``numba_kernels``), used by ops when
``backend.kernels_for(...)`` offers them; each allocates its outputs, and large arrays are split into one
contiguous share per core on the backend's thread pool (the kernels release the GIL). The ops keep a
pure-NumPy path for everything else (float64, no numba installed, ``NNFORGE_FAST_KERNELS=0``), and the
tests check that both paths agree.
"""
from __future__ import annotations

import functools
import glob
import math
import os
from typing import Any, Callable

import numpy as np

from . import numba_kernels as nk
from . import numba_stream as ns
from . import numba_tasks as nt
from .ufunc_loops import binary_loop
from .worker_pool import CompiledTask

_PARALLEL_MIN = 1 << 15  # elements: below this, handing work to other threads costs more than it saves


def _size_bytes(text: str) -> int:
    """A sysfs cache size ("32768K", "1M", "512") in bytes; ValueError if it is none."""
    text = text.strip().upper()
    shift = {"K": 10, "M": 20, "G": 30}.get(text[-1:], 0)
    return int(text[:-1] if shift else text) << shift


def _last_level_cache_bytes(pattern: str = "/sys/devices/system/cpu/cpu0/cache/index*/size") -> int:
    """The size of CPU 0's largest cache (Linux's sysfs), else 32 MiB."""
    sizes = []
    for path in glob.glob(pattern):
        try:
            with open(path) as f:
                sizes.append(_size_bytes(f.read()))
        except (OSError, ValueError):
            continue
    return max(sizes, default=32 << 20)


# Ops with a fresh output that touch more bytes (inputs and output) than the last-level cache holds store their
# results with streaming stores (``numba_stream``). Measured on a 32 MiB cache, two threads, paired with torch:
# 4M-element add (48 MB) 0.72-0.90x torch's time streaming, 0.89-0.98x not; mul 0.66-0.83x vs 0.86-0.93x; 4M
# `x**3` (32 MB) 0.75x vs 0.69x; 1M add (12 MB) 0.21 vs 0.15 ms. ``NNFORGE_STREAM_STORES=0`` turns it off.
_STREAM_MIN_BYTES = _last_level_cache_bytes()
_STREAMS = ns.AVAILABLE and os.environ.get("NNFORGE_STREAM_STORES", "1") != "0"
_STREAM_OPERATIONS = {np.add: ns.ADD, np.subtract: ns.SUB, np.multiply: ns.MUL, np.true_divide: ns.DIV}
_COLS_T_MAX_C = 4  # convolutions of inputs with at most this many channels use the transposed im2col matrix
_CONV_ROWS = 1024  # im2col rows per chunk of a convolution (a few images: the scratch stays in cache)


class FastKernels:
    """Compiled kernels for C-contiguous float32 arrays; ``backend`` provides ``parallel_for``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def _split(self, n: int, size: int, fn: Callable[[slice], None], serial: bool = False) -> None:
        """``fn`` over ``range(n)`` (items of ``size`` elements in all): in one call when small or ``serial``
        (already inside ``parallel_for``), else one contiguous slice per core."""
        if serial or size < _PARALLEL_MIN or n < 2:
            fn(slice(0, n))
            return
        self.backend.run_parts([functools.partial(fn, sl) for sl in self.backend.part_slices(n)])

    def _map(self, op: int, out: np.ndarray, x: np.ndarray, y: np.ndarray | None = None, flag: int = 0) -> np.ndarray:
        """``numba_tasks.run_elementwise(op, x, y, out, flag)`` over flat arrays, one piece per core; each piece
        is a ``CompiledTask``, which a polling worker runs without taking the GIL. The pieces are cut at
        multiples of ``numba_tasks.VECTOR_BLOCK`` elements, so that every element goes through the same code as
        in one call over the whole array: with fastmath (contracted multiply-adds) a loop's vectorised body and
        its scalar tail can round differently, and a cut elsewhere gave GELU gradients 1 ulp apart from one
        call's."""
        fx, fo = x.reshape(-1), out.reshape(-1)
        fy = fx if y is None else y.reshape(-1)
        if fo.size >= _PARALLEL_MIN and self.backend.run_split(op, fx, fy, fo, flag):
            return out  # the workers were polling: all in one compiled call, cut as below (numba_tasks._cut)
        parts = self.backend.part_slices(fo.size) if fo.size >= _PARALLEL_MIN else [slice(0, fo.size)]
        cuts = [0, *(sl.start - sl.start % nt.VECTOR_BLOCK for sl in parts[1:]), fo.size]
        parts = [slice(start, stop) for start, stop in zip(cuts, cuts[1:])]
        self.backend.run_parts([CompiledTask(functools.partial(nt.run_elementwise, op, fx[sl], fy[sl], fo[sl], flag),
                                             op, fx[sl], fy[sl], fo[sl], flag=flag) for sl in parts])
        return out

    def _binary_operands(self, ufunc: Any, a: Any, b: Any, out: np.ndarray) -> tuple | None:
        """``ufunc(a, b, out=out)`` (out and a and/or b flat float32 arrays, the other a single value) as a UFUNC
        operation (``numba_tasks``): (loop, mode, value, x, y), x and y the arrays ``post`` reads (a single value
        is read from a scalar slot instead); None when the ufunc's own inner loop (``ufunc_loops``) cannot do
        it: no such loop, an unaligned array (NumPy hands its loops aligned data only), or a value that float32
        cannot hold."""
        loop = binary_loop(ufunc, np.float32)
        arrays = [v for v in (a, b, out) if type(v) is np.ndarray]
        if loop is None or not all(v.flags.aligned for v in arrays):
            return None
        if len(arrays) == 3:
            mode, value, x, y = nt.ARRAYS, np.float32(0.0), a, b
        elif type(a) is np.ndarray:
            mode, value, x, y = nt.SCALAR_Y, _float32_value(b), a, a
        else:
            mode, value, x, y = nt.SCALAR_X, _float32_value(a), b, b
        return None if value is None else (loop, mode, value, x, y)

    def binary_split(self, ufunc: Any, a: Any, b: Any, out: np.ndarray, fresh: bool = False) -> bool:
        """``ufunc(a, b, out=out)`` through the ufunc's inner loop, one piece per core in one compiled call
        (``backend.run_split``), when every pool worker polls; False, with nothing done, otherwise. Neither
        share raises NumPy's floating-point warnings (division by zero, overflow), as torch never does: the
        loop is called without the ufunc machinery that checks the FPU's flags. ``fresh``: out is a new array
        (not an operand, nothing reads it yet); then ``+ - * /`` over more than ``_STREAM_MIN_BYTES`` store
        their results with streaming stores, bit-identical to the ufunc's."""
        operands = self._binary_operands(ufunc, a, b, out)
        if operands is None:
            return False
        loop, mode, value, x, y = operands
        operation = _STREAM_OPERATIONS.get(ufunc) if fresh and _STREAMS else None
        if operation is not None and out.nbytes * (3 if mode == nt.ARRAYS else 2) > _STREAM_MIN_BYTES:
            return self.backend.run_split(nt.STREAM, x, y, out, mode, value, (operation, 0))
        return self.backend.run_split(nt.UFUNC, x, y, out, mode, value, loop)

    def binary_tasks(self, ufunc: Any, a: Any, b: Any, out: np.ndarray, slices: list[slice],
                     calls: list[Callable[[], Any]]) -> list[CompiledTask] | None:
        """``backend.binary``'s per-core ``calls`` of ``ufunc(a, b, out=out)`` over ``slices`` as
        ``CompiledTask``s, which a polling worker runs by calling the ufunc's own inner loop; None when that
        cannot be (``_binary_operands``)."""
        operands = self._binary_operands(ufunc, a, b, out)
        if operands is None:
            return None
        loop, mode, value, x, y = operands
        return [CompiledTask(call, nt.UFUNC, x[sl], y[sl], out[sl], value, mode, loop)
                for sl, call in zip(slices, calls)]

    def cube(self, a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        if _STREAMS and 2 * a.nbytes > _STREAM_MIN_BYTES:  # streaming stores (see binary_split), when the workers poll
            flat, flat_out = a.reshape(-1), out.reshape(-1)
            if self.backend.run_split(nt.STREAM, flat, flat, flat_out, nt.ARRAYS, np.float32(0.0), (ns.CUBE, 0)):
                return out
        return self._map(nt.CUBE, out, a)

    def _reduce(self, rows: Callable, a: np.ndarray, last_axis: bool, partial_dtype: Any,
                op: int | None = None, flag: int | None = None) -> np.ndarray:
        """``rows(x2, out)``, a kernel reducing each row of x2 into out, over the last axis of ``a`` (returns the
        result, shape ``a.shape[:-1]``, float32), or over ``a`` cut into one flat part per core plus any
        remainder (returns the parts' results in ``partial_dtype``, for the caller to combine). ``op`` and
        ``flag``: the kernel's operation in ``numba_tasks``, if it has one (see ``_rows``)."""
        if last_axis:
            out = np.empty(a.shape[:-1], np.float32)
            self._rows(rows, op, a.reshape(-1, a.shape[-1]), out.reshape(-1), flag)
            return out
        k = max(1, min(self.backend.num_threads, a.size // _PARALLEL_MIN))
        flat = a.reshape(-1)
        cut = flat.size - flat.size % k  # k equal rows; a remainder of fewer than k elements is a row of its own
        partial = np.empty(k + (cut < flat.size), partial_dtype)
        self._rows(rows, op, flat[:cut].reshape(k, -1), partial[:k], flag)
        if cut < flat.size:
            rows(flat[cut:].reshape(1, -1), partial[k:])
        return partial

    def _rows(self, rows: Callable, op: int | None, x2: np.ndarray, out: np.ndarray, flag: int | None = None) -> None:
        """``rows(x2, out)`` with x2's rows split over the cores; each share a ``CompiledTask`` when ``op`` is
        given, with ``flag`` (by default out's dtype, as ``numba_tasks.SUM_ROWS`` takes it: float64 or not)."""
        if x2.size < _PARALLEL_MIN or x2.shape[0] < 2:
            rows(x2, out)
            return
        parts = self.backend.part_slices(x2.shape[0])
        if op is None:
            self.backend.run_parts([functools.partial(rows, x2[sl], out[sl]) for sl in parts])
            return
        flag = int(out.dtype == np.float64) if flag is None else flag
        self.backend.run_parts([CompiledTask(functools.partial(rows, x2[sl], out[sl]), op, x2[sl], x2[sl], out[sl],
                                             flag=flag) for sl in parts])

    def sum(self, a: np.ndarray, last_axis: bool) -> np.ndarray:
        """Sum of all elements (a 0-d array), or over the last axis (shape ``a.shape[:-1]``), float32. Every
        share of the work adds in float64 across blocks of 1024 (see ``numba_kernels._sum64``)."""
        out = self._reduce(nk.sum_rows, a, last_axis, np.float64, nt.SUM_ROWS)
        return out if last_axis else np.asarray(out.sum(), np.float32)

    def extreme(self, a: np.ndarray, last_axis: bool, largest: bool) -> np.ndarray:
        """Max (``largest``) or min of all elements (a 0-d array) or over the last axis, float32; NaN where
        the values hold one, as torch's amax/amin."""
        out = self._reduce(lambda x2, o: nk.extreme_rows(x2, o, largest), a, last_axis, np.float32,
                           nt.EXTREME_ROWS, int(largest))
        if last_axis:
            return out
        return np.asarray(out.max() if largest else out.min())  # NumPy's max/min keep a NaN

    def erf(self, x: np.ndarray) -> np.ndarray:
        return self._map(nt.ERF, np.empty_like(x), x)

    def exp(self, x: np.ndarray) -> np.ndarray:
        """The compiled ``_exp`` that softmax and GELU use inside their loops, exposed for its accuracy test
        (for ``Tensor.exp`` itself NumPy's SIMD exp is as fast, so ops do not call this)."""
        return self._map(nt.EXP, np.empty_like(x), x)

    def gelu(self, x: np.ndarray, approximate: str) -> np.ndarray:
        return self._map(nt.GELU, np.empty_like(x), x, flag=int(approximate == "tanh"))

    def bias_gelu(self, h: np.ndarray, b: np.ndarray, approximate: str, keep_input: bool) -> np.ndarray:
        """gelu(h + b) for a GEMM output h (R, C) and bias b (C,), one pass. With ``keep_input`` h becomes
        h + b (backward's input) and the activation is a new array; without, it overwrites h."""
        b, tanh = np.ascontiguousarray(b, np.float32), approximate == "tanh"
        if not keep_input:
            self._split(h.shape[0], h.size, lambda sl: nk.bias_gelu_(h[sl], b, tanh))
            return h
        out = np.empty_like(h)
        self._split(h.shape[0], h.size, lambda sl: nk.bias_gelu(h[sl], b, out[sl], tanh))
        return out

    def gelu_grad(self, g: np.ndarray, x: np.ndarray, approximate: str) -> np.ndarray:
        return self._map(nt.GELU_GRAD, np.empty_like(x), np.ascontiguousarray(g), x, flag=int(approximate == "tanh"))

    def softmax(self, x: np.ndarray) -> np.ndarray:
        """Softmax over the last axis into a new array (rows of -inf become NaN, as in torch)."""
        out = np.empty_like(x)
        c = x.shape[-1]
        x2, o2, fill = x.reshape(-1, c), out.reshape(-1, c), np.float32(np.nan)
        self._split(x2.shape[0], x2.size, lambda sl: nk.softmax_rows(x2[sl], o2[sl], fill))
        return out

    def softmax_(self, p: np.ndarray, masked_rows_zero: bool = False, serial: bool = False,
                 scale: float = 1.0) -> np.ndarray:
        """Softmax over the last axis of ``scale * p`` (scale > 0) in place; returns ``p``. Rows of -inf become
        0 with ``masked_rows_zero`` (attention), else NaN (as torch.softmax gives). ``serial``: on the calling
        thread only (inside ``backend.parallel_for``)."""
        p2 = p.reshape(-1, p.shape[-1])
        fill, s = np.float32(0.0 if masked_rows_zero else np.nan), np.float32(scale)
        self._split(p2.shape[0], p2.size, lambda sl: nk.softmax_rows_(p2[sl], fill, s), serial)
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

    def layer_norm(self, x2: np.ndarray, w: Any, b: Any, eps: float, residual: Any = None,
                   keep_xhat: bool = True, input_bias: Any = None) -> tuple:
        """(out, xhat, rstd) of layer norm over the rows of an (R, D) input (plus ``residual``, (R, D), and
        ``input_bias``, length D, added in the same pass); ``w``/``b`` of length D or None; xhat is None
        unless ``keep_xhat``."""
        r, d = x2.shape
        w = np.ones(d, np.float32) if w is None else np.ascontiguousarray(w.reshape(-1), np.float32)
        b = np.zeros(d, np.float32) if b is None else np.ascontiguousarray(b.reshape(-1), np.float32)
        xb = b if input_bias is None else np.ascontiguousarray(input_bias.reshape(-1), np.float32)
        out, rstd = np.empty_like(x2), np.empty((r, 1), np.float32)
        xhat = np.empty_like(x2) if keep_xhat else out  # out: a placeholder the kernel does not write as xhat
        res = x2 if residual is None else residual
        r1, e = rstd.reshape(-1), np.float32(eps)
        self._split(r, x2.size, lambda sl: nk.layer_norm(x2[sl], res[sl], residual is not None, xb,
                                                         input_bias is not None, w, b, e, out[sl], xhat[sl],
                                                         r1[sl], keep_xhat))
        return out, (xhat if keep_xhat else None), rstd

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
        """The compiled ``lstm_forward_step(pre_t, bias, gates, c_prev, c, tanh_c, h, xh_next, x_cols,
        has_next)`` on C-contiguous float32 rows, gates in torch's order (i, f, g, o): from the step's GEMM
        ``pre_t`` = [W_ih | W_hh] [x_t | h_prev]^T (4H, B) writes the activated ``gates`` (B, 4H), ``c``,
        ``tanh_c``, ``h`` (B, H) and ``h`` into ``xh_next[:, x_cols:]``. Returned as is (no wrapper frame per
        timestep)."""
        from . import numba_rnn_kernels as rk
        return rk.lstm_forward_step

    def blas_thread_limit(self) -> int:
        """The threads NumPy's BLAS may use now (threadpoolctl's view; the backend's core count without it).
        The recurrent layers split their batch into at most this many shares, so that a BLAS limit of 1
        (``threadpool_limits(1)``, ``benchmarks --threads 1``) keeps their time loop on one thread as well."""
        from .numpy_backend import _blas_controller
        ctl = _blas_controller()
        limits = [lib.num_threads for lib in ctl.lib_controllers if lib.user_api == "blas"] if ctl else []
        return max(limits) if limits else self.backend.num_threads

    @staticmethod
    def embedding_grad(idx: np.ndarray, g2: np.ndarray, rows: int) -> np.ndarray:
        """Gradient (rows, D) of an embedding table from the flat integer indices (N,) and the output grad
        (N, D), float32: one pass in index order (bit for bit what sort + ``add.reduceat`` gives)."""
        from . import numba_rnn_kernels as rk
        gw = np.zeros((rows, g2.shape[1]), np.float32)
        rk.embedding_grad_(np.ascontiguousarray(idx), np.ascontiguousarray(g2), gw)
        return gw

    @property
    def lstm_backward_step(self) -> Callable:
        """The compiled ``lstm_backward_step(g_out, dh_rec, dc, gates, c_prev, tanh_c, dpre, dbias)``: the
        step's pre-activation grads into ``dpre``, ``dc`` carried back in place, the bias grad summed in."""
        from . import numba_rnn_kernels as rk
        return rk.lstm_backward_step

    # -- convolution, max pooling, ReLU (numba_conv_kernels) ------------------------------------------------
    # Arrays indexed (N, H, W, C) whatever their layout: ``x4 = x.transpose(0, 2, 3, 1)`` of an NCHW array.

    def _per_core(self, n: int, fn: Callable[[slice], None]) -> None:
        """``fn`` over ``range(n)`` in one contiguous share per core (BLAS pinned to one thread meanwhile)."""
        k = self.backend.num_threads
        if k < 2 or n < 2:
            fn(slice(0, n))
        else:
            self.backend.parallel_for(n, fn, grain=-(-n // k))

    def conv2d(self, x4: np.ndarray, wm: np.ndarray, b: Any, geom: tuple) -> tuple:
        """Convolution of x4 (N, H, W, C) with wm (kh*kw*C, O) [+ b (O,)] -> (out (N, Ho, Wo, O) C-contiguous,
        the input as read: x4 or its channels-last copy, which ``conv2d_grad`` reads faster).
        ``geom`` = (kh, kw, sh, sw, dh, dw, ph, pw, Ho, Wo). Per core, a few images at a time: their im2col
        rows are written into a scratch buffer that stays in cache, and one GEMM writes their output rows;
        with a bias, im2col adds a column of ones and the GEMM a row ``b``, so the bias costs no extra pass."""
        from . import numba_conv_kernels as ck
        kh, kw, sh, sw, dh, dw, ph, pw, ho, wo = geom
        n, r = x4.shape[0], ho * wo
        k, o = wm.shape
        if b is not None:
            wm = np.concatenate([wm, np.asarray(b, np.float32).reshape(1, o)])
        wm = np.ascontiguousarray(wm)
        ones = b is not None
        out = np.empty((n, ho, wo, o), np.float32)
        nb = max(1, _CONV_ROWS // r)
        if not x4.flags.c_contiguous and x4.shape[3] > 1:
            x4 = np.ascontiguousarray(x4)  # one transposing copy, so that im2col reads runs of C values

        def share(sl: slice) -> None:
            if x4.shape[3] <= _COLS_T_MAX_C:  # few channels: the transposed im2col matrix, per image
                ct = np.empty((min(nb, sl.stop - sl.start), k + ones, r), np.float32)
                ct[:, k:] = 1.0
                for s in range(sl.start, sl.stop, nb):
                    e = min(s + nb, sl.stop)
                    ck.im2col_t(x4[s:e], ct, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo)
                    np.matmul(ct[:e - s].transpose(0, 2, 1), wm, out=out[s:e].reshape(e - s, r, o))
                return
            cols = np.empty((min(nb, sl.stop - sl.start) * r, k + ones), np.float32)
            for s in range(sl.start, sl.stop, nb):
                e = min(s + nb, sl.stop)
                c = cols[:(e - s) * r]
                ck.im2col(x4[s:e], c, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo, ones)
                np.matmul(c, wm, out=out[s:e].reshape(-1, o))

        self._per_core(n, share)
        return out, x4

    def conv2d_grad(self, x4: Any, wm: np.ndarray, g4: np.ndarray, in_shape: tuple, geom: tuple,
                    need_x: bool, need_w: bool, need_b: bool) -> tuple:
        """Gradients of ``conv2d``: g4 (N, Ho, Wo, O) any layout -> (gx (N, H, W, C) or None,
        gw (kh*kw*C, O) or None, gb (O,) or None). The im2col rows are recomputed per chunk (in cache), with
        the column of ones when the bias needs a gradient too: its row of the weight-gradient GEMM is gb."""
        from . import numba_conv_kernels as ck
        kh, kw, sh, sw, dh, dw, ph, pw, ho, wo = geom
        n, r = g4.shape[0], ho * wo
        k, o = wm.shape
        gx = np.empty(in_shape, np.float32) if need_x else None
        wt = np.ascontiguousarray(wm.T) if need_x else None
        nb = max(1, _CONV_ROWS // r)
        ones = need_w and need_b
        small = need_w and x4.shape[3] <= _COLS_T_MAX_C
        partial: list = []

        def share(sl: slice) -> None:
            m = min(nb, sl.stop - sl.start) * r
            if need_w and small:
                cols = np.empty((m // r, k + ones, r), np.float32)
                cols[:, k:] = 1.0
            else:
                cols = np.empty((m, k + ones), np.float32) if need_w else None
            gcols = np.empty((m, k), np.float32) if need_x else None
            gw = np.zeros((k + ones, o), np.float32) if need_w else None
            tmp = np.empty_like(gw) if need_w else None
            gb = np.zeros(o, np.float32) if need_b and not ones else None
            for s in range(sl.start, sl.stop, nb):
                e = min(s + nb, sl.stop)
                gch = np.ascontiguousarray(g4[s:e]).reshape(-1, o)
                if gb is not None:
                    gb += gch.sum(axis=0)
                if need_w and small:
                    ck.im2col_t(x4[s:e], cols, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo)
                    gw += np.matmul(cols[:e - s], gch.reshape(e - s, r, o)).sum(axis=0)
                elif need_w:
                    c = cols[:(e - s) * r]
                    ck.im2col(x4[s:e], c, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo, ones)
                    np.matmul(c.T, gch, out=tmp)
                    gw += tmp
                if need_x:
                    c = gcols[:(e - s) * r]
                    np.matmul(gch, wt, out=c)
                    ck.col2im(c, gx[s:e], kh, kw, sh, sw, dh, dw, ph, pw, ho, wo)
            partial.append((gw, gb))  # list.append is atomic under the GIL

        self._per_core(n, share)
        gw = gb = None
        if need_w:
            gw = partial[0][0] if len(partial) == 1 else np.sum([p[0] for p in partial], axis=0)
            if ones:
                gw, gb = gw[:k], gw[k]
        if need_b and not ones:
            gb = partial[0][1] if len(partial) == 1 else np.sum([p[1] for p in partial], axis=0)
        return gx, gw, gb

    def max_pool2d(self, x4: np.ndarray, geom: tuple) -> tuple:
        """Max pooling of a channels-last x4 (N, H, W, C) C-contiguous -> (out (N, C, Ho, Wo) C-contiguous,
        winning kernel offsets (N, Ho, Wo, C), uint8 or int32). ``geom`` as ``pooling._pool_geom``."""
        from . import numba_conv_kernels as ck
        (kh, kw), (sh, sw), (dh, dw), (ph, pw), (ho, wo), _ = geom
        n, c = x4.shape[0], x4.shape[3]
        out = np.empty((n, c, ho, wo), np.float32)
        idx = np.empty((n, ho, wo, c), np.uint8 if kh * kw < 256 else np.int32)
        o4 = out.transpose(0, 2, 3, 1)
        self._split(n, x4.size, lambda sl: ck.max_pool(x4[sl], o4[sl], idx[sl], kh, kw, sh, sw, dh, dw, ph, pw))
        return out, idx

    def max_pool2d_grad(self, g4: np.ndarray, idx: np.ndarray, in_hw: tuple, geom: tuple) -> Any:
        """Gradient of ``max_pool2d``: g4 (N, Ho, Wo, C) any layout -> dx (N, C, H, W), channels-last."""
        from . import numba_conv_kernels as ck
        (kh, kw), (sh, sw), (dh, dw), (ph, pw), (ho, wo), _ = geom
        n, c = g4.shape[0], g4.shape[3]
        h, w = in_hw
        dx4 = np.empty((n, h, w, c), np.float32)
        if (sh, sw, dh, dw, ph, pw) == (kh, kw, 1, 1, 0, 0) and (h, w) == (ho * kh, wo * kw):
            self._split(n, dx4.size, lambda sl: ck.max_pool_grad_tiled(g4[sl], idx[sl], dx4[sl], kh, kw))
        else:
            self._split(n, dx4.size, lambda sl: ck.max_pool_grad(g4[sl], idx[sl], dx4[sl], kw, sh, sw, dh, dw, ph,
                                                                 pw))
        return dx4.transpose(0, 3, 1, 2)

    @staticmethod
    def _flat_alike(*arrays: Any) -> Any:
        """1-d views of float32 arrays of one shape and one dense memory layout (any axis order), else None."""
        a0 = arrays[0]
        if any(a.dtype != np.float32 or a.shape != a0.shape or a.strides != a0.strides for a in arrays):
            return None
        perm = sorted(range(a0.ndim), key=lambda i: -a0.strides[i])
        if not a0.transpose(perm).flags.c_contiguous:
            return None
        return [a.transpose(perm).reshape(-1) for a in arrays]

    def relu(self, x: np.ndarray) -> Any:
        """max(x, 0) (NaN kept) in x's memory layout, or None when x is not a dense float32 array."""
        from . import numba_conv_kernels as ck
        out = np.empty_like(x)
        flat = self._flat_alike(x, out)
        if flat is None:
            return None
        a, o = flat
        self._split(o.size, o.size, lambda sl: ck.relu(a[sl], o[sl]))
        return out

    def relu_grad(self, g: np.ndarray, y: np.ndarray) -> Any:
        """g where y > 0 (or NaN) else 0, or None unless g and y share one dense float32 layout."""
        from . import numba_conv_kernels as ck
        out = np.empty_like(y)
        flat = self._flat_alike(g, y, out)
        if flat is None:
            return None
        a, b, o = flat
        self._split(o.size, o.size, lambda sl: ck.relu_grad(a[sl], b[sl], o[sl]))
        return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _float32_value(v: Any) -> np.float32 | None:
    """A Python number or NumPy float32 scalar as the float32 that NumPy's float32 ufuncs compute with (NEP 50);
    None for a finite value beyond float32's range (NumPy warns of the overflow; let it)."""
    if type(v) is np.float32:
        return v
    if type(v) in (int, float) and (abs(v) <= _FLOAT32_MAX or type(v) is float and not math.isfinite(v)):
        return np.float32(v)
    return None
