"""float32 kernels (numba) for one timestep of a recurrent layer: everything of the step except the GEMM with
the recurrent weights, in one pass over the step's gates.

LSTM forward: ``pre = x-projection (T, B, 4H rows of one step) + h_prev W_hh^T + bias`` in torch's gate order
(i, f, g, o) -> activated gates (in place), ``c = f c_prev + i g``, ``tanh(c)``, ``h = o tanh(c)``.
LSTM backward: from ``dh`` (output grad of the step + the recurrent grad) and the carried ``dc``, the
pre-activation grads of the step, the ``dc`` carried to the step before, and the bias grad summed in.

sigmoid(x) = 1 / (1 + e^-x) and tanh(x) = 2 / (1 + e^-2x) - 1 with the float32 ``_exp`` of ``numba_kernels``
(absolute error of a few 1e-8; both saturate without overflow: e^(large) is inf, 1/inf is 0).
"""
from __future__ import annotations

import numba
import numpy as np

from .numba_kernels import _JIT, _exp

_F = np.float32
_ONE, _TWO = _F(1.0), _F(2.0)


@numba.njit(**_JIT, inline="always")
def _sigmoid(x):
    return _ONE / (_ONE + _exp(-x))


@numba.njit(**_JIT, inline="always")
def _tanh(x):
    return _TWO / (_ONE + _exp(-_TWO * x)) - _ONE


@numba.njit(**_JIT)
def lstm_forward_step(gates, rec, bias, c_prev, c, tanh_c, h):
    """``gates`` (B, 4H): the step's input projection in, its activated gates (i, f, g, o) out; ``rec``
    (B, 4H) = h_prev W_hh^T; ``bias`` (4H,) = b_ih + b_hh; writes ``c``, ``tanh_c``, ``h`` (B, H)."""
    n, g4 = gates.shape
    hs = g4 // 4
    for b in range(n):
        a, r, cp = gates[b], rec[b], c_prev[b]
        cb, tb, hb = c[b], tanh_c[b], h[b]
        for j in range(hs):
            gi = _sigmoid(a[j] + r[j] + bias[j])
            gf = _sigmoid(a[hs + j] + r[hs + j] + bias[hs + j])
            gg = _tanh(a[2 * hs + j] + r[2 * hs + j] + bias[2 * hs + j])
            go = _sigmoid(a[3 * hs + j] + r[3 * hs + j] + bias[3 * hs + j])
            a[j] = gi
            a[hs + j] = gf
            a[2 * hs + j] = gg
            a[3 * hs + j] = go
            cv = gf * cp[j] + gi * gg
            tc = _tanh(cv)
            cb[j] = cv
            tb[j] = tc
            hb[j] = go * tc


@numba.njit(**_JIT)
def lstm_backward_step(g_out, dh_rec, dc, gates, c_prev, tanh_c, dpre, dbias):
    """``dh = g_out + dh_rec`` (B, H); ``dc`` (B, H) in: grad of this step's cell state from later steps,
    out: grad of ``c_prev``; writes the pre-activation grads ``dpre`` (B, 4H) and adds their sum over the
    batch to ``dbias`` (4H,)."""
    n, g4 = gates.shape
    hs = g4 // 4
    for b in range(n):
        a, cp, tb, go_, dr, dcb, d = gates[b], c_prev[b], tanh_c[b], g_out[b], dh_rec[b], dc[b], dpre[b]
        for j in range(hs):
            gi, gf, gg, go = a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j]
            tc = tb[j]
            dh = go_[j] + dr[j]
            dcv = dcb[j] + dh * go * (_ONE - tc * tc)
            d[j] = dcv * gg * gi * (_ONE - gi)
            d[hs + j] = dcv * cp[j] * gf * (_ONE - gf)
            d[2 * hs + j] = dcv * gi * (_ONE - gg * gg)
            d[3 * hs + j] = dh * tc * go * (_ONE - go)
            dcb[j] = dcv * gf
        for k in range(g4):
            dbias[k] += d[k]
