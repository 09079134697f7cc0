"""float32 kernels (numba) for one timestep of a recurrent layer: everything of the step except its GEMM, in
one pass over the step's gates (and, at the end, the backward of the embedding lookup that usually feeds one).

LSTM forward: ``pre = [x_t | h_prev] [W_ih | W_hh]^T + bias`` in torch's gate order (i, f, g, o) -> activated
gates, ``c = f c_prev + i g``, ``tanh(c)``, ``h = o tanh(c)``.
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


# Each kernel runs a few short loops per batch row, each over one gate's contiguous (H,) piece and writing one
# array: LLVM vectorises a loop only when the runtime checks that its arrays do not overlap stay few, and
# indexing per-gate views (not ``row[k * H + j]``) keeps the indices provably non-negative (no wraparound).

_TILE = 16  # block side of the transposed read of ``pre_t`` (16 x 16 blocks: 2x faster than strided gathers)


@numba.njit(**_JIT, inline="always")
def _add_transposed(pre_t, bias, gates, k_lo, k_hi, b_lo, b_hi):
    """``gates[b, k] = pre_t[k, b] + bias[k]`` over a block, in tiles of 16 columns."""
    for k0 in range(k_lo, k_hi, _TILE):
        k1 = min(k0 + _TILE, k_hi)
        bt = bias[k0:k1]
        for b in range(b_lo, b_hi):
            a = gates[b, k0:k1]
            for k in range(k1 - k0):
                a[k] = pre_t[k0 + k, b] + bt[k]


@numba.njit(**_JIT)
def lstm_forward_step(pre_t, bias, gates, c_prev, c, tanh_c, h, xh_next, x_cols, has_next):
    """One LSTM step for B batch rows, gates in torch's order (i, f, g, o). ``pre_t`` (4H, B) =
    W_cat [x_t | h_prev]^T, the step's whole GEMM, transposed (that product is ~30% faster than
    ``[x_t | h_prev] W_cat^T`` for a batch of 32-64, and reading it back transposed, in tiles, costs far less);
    ``bias`` (4H,) = b_ih + b_hh; writes the activated ``gates`` (B, 4H), ``c``, ``tanh_c``, ``h`` (B, H) and,
    when ``has_next``, ``h`` again into ``xh_next[:, x_cols:]`` (B, x_cols + H), the next step's GEMM input."""
    n, g4 = gates.shape
    hs = g4 // 4
    kf, nf = g4 - g4 % _TILE, n - n % _TILE
    for k0 in range(0, kf, _TILE):  # full 16 x 16 blocks: constant trip counts, LLVM transposes in registers
        for b0 in range(0, nf, _TILE):
            for bb in range(_TILE):
                a = gates[b0 + bb, k0:k0 + _TILE]
                for kk in range(_TILE):
                    a[kk] = pre_t[k0 + kk, b0 + bb] + bias[k0 + kk]
    _add_transposed(pre_t, bias, gates, 0, g4, nf, n)  # the ragged edges
    _add_transposed(pre_t, bias, gates, kf, g4, 0, nf)
    for b in range(n):
        a = gates[b]
        s = a[:2 * hs]
        for k in range(2 * hs):
            s[k] = _sigmoid(s[k])
        gg = a[2 * hs:3 * hs]
        for j in range(hs):
            gg[j] = _tanh(gg[j])
        go = a[3 * hs:]
        for j in range(hs):
            go[j] = _sigmoid(go[j])
        gi, gf, cp, cb, tb, hb = a[:hs], a[hs:2 * hs], c_prev[b], c[b], tanh_c[b], h[b]
        for j in range(hs):
            cb[j] = gf[j] * cp[j] + gi[j] * gg[j]
        for j in range(hs):
            tb[j] = _tanh(cb[j])
        for j in range(hs):
            hb[j] = go[j] * tb[j]
        if has_next:
            xb = xh_next[b, x_cols:]
            for j in range(hs):
                xb[j] = hb[j]


@numba.njit(**_JIT)
def lstm_backward_step(g_out, dh_rec, dc, gates, c_prev, tanh_c, dpre, dbias):
    """``dh = g_out + dh_rec`` (B, H); ``dc`` (B, H) in: grad of this step's cell state from later steps,
    out: grad of ``c_prev``; writes the pre-activation grads ``dpre`` (B, 4H) and adds their sum over the
    batch to ``dbias`` (4H,)."""
    n, g4 = gates.shape
    hs = g4 // 4
    for b in range(n):
        a, d, dcb, tb, cp = gates[b], dpre[b], dc[b], tanh_c[b], c_prev[b]
        gi, gf, gg, go = a[:hs], a[hs:2 * hs], a[2 * hs:3 * hs], a[3 * hs:]
        di, df, dg, do = d[:hs], d[hs:2 * hs], d[2 * hs:3 * hs], d[3 * hs:]
        go_, dr = g_out[b], dh_rec[b]
        for j in range(hs):
            do[j] = go_[j] + dr[j]  # dh, until the o gate's grad replaces it
        for j in range(hs):
            dcb[j] = dcb[j] + do[j] * go[j] * (_ONE - tb[j] * tb[j])
        for j in range(hs):
            do[j] = do[j] * tb[j] * go[j] * (_ONE - go[j])
        for j in range(hs):
            di[j] = dcb[j] * gg[j] * gi[j] * (_ONE - gi[j])
        for j in range(hs):
            df[j] = dcb[j] * cp[j] * gf[j] * (_ONE - gf[j])
        for j in range(hs):
            dg[j] = dcb[j] * gi[j] * (_ONE - gg[j] * gg[j])
        for j in range(hs):
            dcb[j] = dcb[j] * gf[j]
        for k in range(g4):
            dbias[k] += d[k]


# -- the embedding lookup in front of a recurrent layer: its backward, one pass ---------------------------------

@numba.njit(nogil=True, cache=True, error_model="numpy")
def embedding_grad_(idx, g, gw):
    """``gw[idx[r]] += g[r]`` for every row r in order (``gw`` zeroed by the caller): each table row sums its
    gradient rows in their original order, the same additions as a stable sort + ``add.reduceat``."""
    d = g.shape[1]
    for r in range(idx.shape[0]):
        row, src = gw[idx[r]], g[r]
        for j in range(d):
            row[j] += src[j]
