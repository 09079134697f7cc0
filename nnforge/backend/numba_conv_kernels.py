"""float32 kernels compiled by numba for convolution, max pooling and ReLU (see ``numba_kernels`` for the why).

Arrays are passed as views indexed (N, H, W, C) whatever their memory layout (channels-last activations give
C-contiguous views, NCHW ones strided views). Padding is handled by bounds checks, so no padded copy of the
input is ever made.

- ``im2col``: the rows of the convolution's im2col matrix for a few images, (rows, kh*kw*C) in (i, j, c)
  order, written into a scratch buffer that stays in cache for the GEMM that follows (``fast_kernels``).
- ``col2im``: the transpose, accumulating a chunk's column gradients into the input gradient.
- ``max_pool`` / ``max_pool_grad`` (channels-last inputs): one pass per window with torch's rules (the first maximum wins ties, the
  last NaN of a window wins, padding is never picked), the winning kernel offset kept as uint8/int32.
- ``relu`` / ``relu_grad``: one pass each over flat arrays.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .numba_kernels import _JIT_EXACT

_F = np.float32


@numba.njit(**_JIT_EXACT, inline="always")
def _valid_cols(off, sw, w, wo):
    """The output columns ox whose input column ox*sw + off lies inside [0, w): range(lo, hi)."""
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    hi = min(wo, (w - off + sw - 1) // sw) if w > off else 0
    return min(lo, wo), max(min(lo, wo), hi)


@numba.njit(**_JIT_EXACT)
def im2col(x, cols, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo, ones):
    """cols[(n*ho + oy)*wo + ox, (i*kw + j)*C + c] = x[n, oy*sh - ph + i*dh, ox*sw - pw + j*dw, c] (0 outside
    the input), one output row and kernel offset at a time (no per-element bounds checks); with ``ones`` a
    last column of ones (the GEMM then adds the bias, and its transpose sums the bias gradient)."""
    n_img, h, w, c_in = x.shape
    k_all = kh * kw * c_in
    zero = _F(0.0)
    for n in range(n_img):
        for oy in range(ho):
            base = (n * ho + oy) * wo
            for i in range(kh):
                y = oy * sh - ph + i * dh
                for j in range(kw):
                    off = j * dw - pw
                    k0 = (i * kw + j) * c_in
                    lo, hi = _valid_cols(off, sw, w, wo)
                    if y < 0 or y >= h:
                        lo, hi = wo, wo
                    for ox in range(lo):
                        for c in range(c_in):
                            cols[base + ox, k0 + c] = zero
                    for ox in range(lo, hi):
                        xx = ox * sw + off
                        for c in range(c_in):
                            cols[base + ox, k0 + c] = x[n, y, xx, c]
                    for ox in range(hi, wo):
                        for c in range(c_in):
                            cols[base + ox, k0 + c] = zero
            if ones:
                for ox in range(wo):
                    cols[base + ox, k_all] = _F(1.0)


@numba.njit(**_JIT_EXACT)
def im2col_t(x, cols_t, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo):
    """The transposed im2col matrix per image, cols_t[n, (i*kw + j)*C + c, oy*wo + ox], for inputs with few
    channels: each write is a run along an output row (contiguous, SIMD) instead of a run of C values.
    Rows past kh*kw*C (the bias's row of ones) are left as they are."""
    n_img, h, w, c_in = x.shape
    zero = _F(0.0)
    for n in range(n_img):
        for oy in range(ho):
            base = oy * wo
            for i in range(kh):
                y = oy * sh - ph + i * dh
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = _valid_cols(off, sw, w, wo)
                    if y < 0 or y >= h:
                        lo, hi = wo, wo
                    for c in range(c_in):
                        dst = cols_t[n, (i * kw + j) * c_in + c]
                        for ox in range(lo):
                            dst[base + ox] = zero
                        for ox in range(lo, hi):
                            dst[base + ox] = x[n, y, ox * sw + off, c]
                        for ox in range(hi, wo):
                            dst[base + ox] = zero


@numba.njit(**_JIT_EXACT)
def col2im(gcols, gx, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo):
    """gx (n, h, w, C), zeroed here, = the sum of the column gradients (rows, kh*kw*C) over the positions
    each pixel fed (the transpose of ``im2col``)."""
    n_img, h, w, c_in = gx.shape
    gx[:] = _F(0.0)
    for n in range(n_img):
        for oy in range(ho):
            base = (n * ho + oy) * wo
            for i in range(kh):
                y = oy * sh - ph + i * dh
                if y < 0 or y >= h:
                    continue
                for j in range(kw):
                    off = j * dw - pw
                    k0 = (i * kw + j) * c_in
                    lo, hi = _valid_cols(off, sw, w, wo)
                    for ox in range(lo, hi):
                        xx = ox * sw + off
                        for c in range(c_in):
                            gx[n, y, xx, c] += gcols[base + ox, k0 + c]


@numba.njit(**_JIT_EXACT)
def max_pool(x, out, idx, kh, kw, sh, sw, dh, dw, ph, pw):
    """x (N, H, W, C) C-contiguous (channels-last); out and idx (N, Ho, Wo, C) views: each window's max and
    its kernel offset. The window is walked offset by offset, each a contiguous run of C values compared at
    once (SIMD) against running maxima kept in a small buffer."""
    n_img, h, w, c_in = x.shape
    ho, wo = out.shape[1], out.shape[2]
    best = np.empty(c_in, np.float32)
    arg = np.empty(c_in, idx.dtype)
    for n in range(n_img):
        for oy in range(ho):
            for ox in range(wo):
                first = True
                for i in range(kh):
                    y = oy * sh - ph + i * dh
                    if y < 0 or y >= h:
                        continue
                    for j in range(kw):
                        xx = ox * sw - pw + j * dw
                        if xx < 0 or xx >= w:
                            continue
                        k = i * kw + j
                        row = x[n, y, xx]
                        if first:
                            first = False
                            for c in range(c_in):
                                best[c] = row[c]
                                arg[c] = k
                        else:
                            for c in range(c_in):
                                v = row[c]
                                if v > best[c] or math.isnan(v):  # torch: first max wins ties, a later NaN wins
                                    best[c] = v
                                    arg[c] = k
                if first:  # no input position in the window (the geometry checks exclude it)
                    best[:] = _F(-np.inf)
                    arg[:] = 0
                for c in range(c_in):
                    out[n, oy, ox, c] = best[c]
                    idx[n, oy, ox, c] = arg[c]


@numba.njit(**_JIT_EXACT)
def max_pool_grad(g, idx, dx, kw, sh, sw, dh, dw, ph, pw):
    """dx (N, H, W, C) C-contiguous, zeroed here, gets each g (N, Ho, Wo, C) at its window's winning position
    (added: overlapping windows may pick the same position)."""
    n_img, ho, wo, c_in = g.shape
    h, w = dx.shape[1], dx.shape[2]
    for n in range(n_img):
        dx[n] = _F(0.0)
        for oy in range(ho):
            for ox in range(wo):
                for c in range(c_in):
                    k = idx[n, oy, ox, c]
                    y = oy * sh - ph + (k // kw) * dh
                    xx = ox * sw - pw + (k % kw) * dw
                    if 0 <= y < h and 0 <= xx < w:
                        dx[n, y, xx, c] += g[n, oy, ox, c]


@numba.njit(**_JIT_EXACT)
def relu(x, out):
    zero = _F(0.0)
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > zero or math.isnan(v) else zero  # NaN stays NaN (torch.relu)


@numba.njit(**_JIT_EXACT)
def relu_grad(g, y, out):
    zero = _F(0.0)
    for i in range(y.size):
        out[i] = zero if y[i] <= zero else g[i]  # torch's threshold_backward: NaN passes the gradient


@numba.njit(**_JIT_EXACT)
def max_pool_grad_tiled(g, idx, dx, kh, kw):
    """``max_pool_grad`` for channels-last windows that tile the input exactly (stride = kernel, no padding
    or dilation, H = Ho*kh, W = Wo*kw): every dx element is written once, no zeroing pass, no scatter."""
    n_img, ho, wo, c_in = g.shape
    gl = np.empty(c_in, np.float32)
    zero = _F(0.0)
    for n in range(n_img):
        for oy in range(ho):
            for ox in range(wo):
                for c in range(c_in):
                    gl[c] = g[n, oy, ox, c]
                win = idx[n, oy, ox]
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        row = dx[n, oy * kh + i, ox * kw + j]
                        for c in range(c_in):
                            row[c] = gl[c] if win[c] == k else zero
