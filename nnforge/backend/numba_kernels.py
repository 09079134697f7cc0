"""float32 kernels compiled by numba (optional accelerator): one pass over memory, SIMD.

NumPy evaluates a formula one operation at a time, each a full pass over memory on one thread; these loops
fuse the whole formula per element. Each kernel runs on the calling thread over the part of the arrays it
is given; ``fast_kernels`` splits large arrays across the backend's own thread pool (``parallel_for``)
rather than numba's OpenMP threads, whose spin-waiting after each loop took the cores from the BLAS GEMM
that came next (MiniLM's GEMMs measured 25% slower). LLVM vectorises a loop only when it calls no library
function, so exp and erf are written out here in float32:

- ``_exp``: Cody-Waite range reduction ``x = n ln2 + r`` (|r| <= ln2/2), Taylor polynomial of degree 7
  for e^r (truncation < 6e-9), and 2^n built from its IEEE bits, all in float32 (16 lanes per AVX-512
  instruction; 3x faster than the float64 evaluation an int-valued ``math.floor`` had caused); inputs below
  -87.3 give 0 (so exp(-inf) is 0 as softmax needs), above 88.7 saturate at 2^128 = inf.
- ``_erf``: ``x * P(x^2) / Q(x^2)`` on |x| <= 4 (erf(4) rounds to 1 in float32), P of degree 6 and Q of
  degree 5, fitted to erf by Lawson-weighted least squares in float64 (max error 1.5e-9 in float64,
  3e-7 when evaluated in float32, i.e. a few float32 ulps).

This module is imported only when numba is installed; ``fused.py`` chooses between it and NumPy.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import float32, int32
from numba.extending import intrinsic

# fastmath without "nnan"/"ninf": the kernels must keep NaN and -inf semantics (masked softmax rows)
_JIT = dict(nogil=True, cache=True, fastmath={"contract", "reassoc", "arcp", "nsz", "afn"}, error_model="numpy")
# plain IEEE arithmetic (results equal NumPy's bit for bit) for the simple elementwise kernels
_JIT_EXACT = dict(nogil=True, cache=True, error_model="numpy")
_F = np.float32

_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693145751953125)  # ln 2 split so that n * _LN2_HI is exact for |n| <= 128
_LN2_LO = _F(1.4286068203094173e-06)
_EXP_LO, _EXP_HI = _F(-87.33), _F(88.72)

_ERF_P = tuple(_F(c) for c in (1.1283791821379845, 0.18471014040005174, 0.05433260251440106,
                               0.003839524442386144, 0.00038269349166987634, 4.780579958327751e-06,
                               -1.3666983176246454e-08))
_ERF_Q = tuple(_F(c) for c in (1.0, 0.49702864546271003, 0.11382625188761213, 0.015453511852482263,
                               0.0013095796878042827, 6.400964500480056e-05))
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = _ERF_P
_Q0, _Q1, _Q2, _Q3, _Q4, _Q5 = _ERF_Q
_INV_SQRT2 = _F(1.0 / math.sqrt(2.0))
_INV_SQRT_2PI = _F(1.0 / math.sqrt(2.0 * math.pi))
_SQRT_2_OVER_PI = _F(math.sqrt(2.0 / math.pi))
_HALF, _ONE, _TWO = _F(0.5), _F(1.0), _F(2.0)


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (what a C union does)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return float32(int32), codegen


@intrinsic
def _bits_from_float(typingctx, x):
    """A float32's bits as an int32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return int32(float32), codegen


@numba.njit(**_JIT, inline="always")
def _ordered_key(bits):
    """Map float32 bits to int32 keys in the floats' order (negative floats' magnitude bits flipped): an
    integer max over the keys is the float max, and LLVM vectorises integer max reductions, not float ones
    (those need no-NaN fast-math). The map is its own inverse."""
    return bits if bits >= 0 else bits ^ int32(0x7FFFFFFF)


@numba.njit(**_JIT, inline="always")
def _row_max(row):
    """max of a float32 row, 16 lanes at a time. A positive NaN is the largest key, so it comes out; a
    negative one (x86's default NaN, from inf - inf) does not, but it still turns the softmax row to NaN
    through exp, and ``_softmax_row_`` checks the one case where it would not (every other entry -inf)."""
    k = int32(-2147483648)
    for j in range(row.shape[0]):
        k = max(k, _ordered_key(_bits_from_float(row[j])))
    return _float_from_bits(_ordered_key(k))


@numba.njit(**_JIT, inline="always")
def _exp(x0):
    x = min(max(x0, _EXP_LO), _EXP_HI)
    n = np.floor(x * _LOG2E + _HALF)  # float32 (math.floor gives an int64, which made the rest float64)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _F(1 / 5040)
    p = p * r + _F(1 / 720)
    p = p * r + _F(1 / 120)
    p = p * r + _F(1 / 24)
    p = p * r + _F(1 / 6)
    p = p * r + _HALF
    p = p * r + _ONE
    p = p * r + _ONE
    # 2^n from its exponent bits, n in [-126, 128]; 2^128 is not a float32, so n = 128 becomes 2 * 2^127 (a
    # select, not p * 2^a * 2^(n-a): fastmath's reassociation may multiply the two powers first, to inf)
    top = n > _F(127.0)
    p = p * _TWO if top else p
    n = n - _ONE if top else n
    y = p * _float_from_bits((int32(n) + 127) << 23)
    y = y if x0 > _EXP_LO else _F(0.0)
    y = y if x0 < _EXP_HI else _F(np.inf)
    return y if x0 == x0 else x0  # NaN stays NaN


@numba.njit(**_JIT, inline="always")
def _erf(x0):
    x = min(max(x0, _F(-4.0)), _F(4.0))
    s = x * x
    p = ((((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0)
    q = (((((_Q5 * s + _Q4) * s + _Q3) * s + _Q2) * s + _Q1) * s + _Q0)
    y = x * p / q
    y = y if abs(x0) < _F(3.9) else math.copysign(_ONE, x0)  # erf rounds to +-1 in float32 from 3.9 on
    return y if x0 == x0 else x0


@numba.njit(**_JIT, inline="always")
def _one_plus_tanh(u):
    """1 + tanh(u) = 2 / (1 + e^(-2u)): exact to rounding also where tanh(u) is close to -1."""
    return _TWO / (_ONE + _exp(-_TWO * u))


@numba.njit(**_JIT_EXACT)
def cube(a, out):
    for i in range(out.size):
        out[i] = a[i] * a[i] * a[i]


_SUM_BLOCK = 1024  # float32 elements summed across vector lanes before a float64 accumulator takes over


@numba.njit(**_JIT, inline="always")
def _sum64(v):
    """Sum of a float32 vector as a float64: blocks of ``_SUM_BLOCK`` summed in float32 (reassociated into
    vector accumulators, each adding ~16 numbers: as accurate as NumPy's pairwise sum), the block sums in
    float64."""
    total = 0.0
    for start in range(0, v.shape[0], _SUM_BLOCK):
        block = v[start:start + _SUM_BLOCK]  # a slice, not a min() loop bound: that one LLVM did not vectorise
        s = _F(0.0)
        for i in range(block.shape[0]):
            s += block[i]
        total += s
    return total


@numba.njit(**_JIT)
def sum_rows(x, out):
    """out[r] = sum of row r of x (R, C), as float32; row sums of a flat array's parts stay float64 when
    ``out`` is float64."""
    for r in range(x.shape[0]):
        out[r] = _sum64(x[r])


@numba.njit(**_JIT)
def extreme_rows(x, out, largest):
    """out[r] = max (``largest``) or min of row r of the float32 (R, C) array x, NaN where the row holds one
    (torch's amax/amin). Compared as ordered integer keys (see ``_ordered_key``), one loop per direction."""
    for r in range(x.shape[0]):
        row = x[r]
        has_nan = False
        if largest:
            k = int32(-2147483648)
            for j in range(row.shape[0]):
                v = row[j]
                k = max(k, _ordered_key(_bits_from_float(v)))
                has_nan |= v != v
        else:
            k = int32(2147483647)
            for j in range(row.shape[0]):
                v = row[j]
                k = min(k, _ordered_key(_bits_from_float(v)))
                has_nan |= v != v
        out[r] = np.float32(np.nan) if has_nan else _float_from_bits(_ordered_key(k))


@numba.njit(**_JIT)
def exp(x, out):
    for i in range(x.size):
        out[i] = _exp(x[i])


@numba.njit(**_JIT)
def erf(x, out):
    for i in range(x.size):
        out[i] = _erf(x[i])


@numba.njit(**_JIT)
def gelu(x, out, tanh_approx):
    if tanh_approx:
        for i in range(x.size):
            v = x[i]
            out[i] = _HALF * v * _one_plus_tanh(_SQRT_2_OVER_PI * (v + _F(0.044715) * v * v * v))
    else:
        for i in range(x.size):
            v = x[i]
            out[i] = _HALF * v * (_ONE + _erf(v * _INV_SQRT2))


@numba.njit(**_JIT, inline="always")
def _gelu(v, tanh_approx):
    if tanh_approx:
        return _HALF * v * _one_plus_tanh(_SQRT_2_OVER_PI * (v + _F(0.044715) * v * v * v))
    return _HALF * v * (_ONE + _erf(v * _INV_SQRT2))


@numba.njit(**_JIT)
def bias_gelu(h, b, out, tanh_approx):
    """out = gelu(h + b) and h += b (the pre-activation backward needs) for h, out (R, C), b (C,)."""
    for r in range(h.shape[0]):
        hr, orow = h[r], out[r]
        for j in range(hr.shape[0]):
            v = hr[j] + b[j]
            hr[j] = v
            orow[j] = _gelu(v, tanh_approx)


@numba.njit(**_JIT)
def bias_gelu_(h, b, tanh_approx):
    """h = gelu(h + b) in place (its own kernel: through a second, aliased output argument LLVM's
    vectorised loop is skipped by its overlap check, 5x slower)."""
    for r in range(h.shape[0]):
        hr = h[r]
        for j in range(hr.shape[0]):
            hr[j] = _gelu(hr[j] + b[j], tanh_approx)


@numba.njit(**_JIT)
def gelu_grad(g, x, out, tanh_approx):
    if tanh_approx:
        for i in range(x.size):
            v = x[i]
            s = _HALF * _one_plus_tanh(_SQRT_2_OVER_PI * (v + _F(0.044715) * v * v * v))  # (1 + tanh) / 2
            du = _SQRT_2_OVER_PI * (_ONE + _F(3 * 0.044715) * v * v)
            out[i] = g[i] * (s + _TWO * v * s * (_ONE - s) * du)  # 1 - tanh^2 = 4 s (1 - s)
    else:
        for i in range(x.size):
            v = x[i]
            cdf = _HALF * (_ONE + _erf(v * _INV_SQRT2))
            out[i] = g[i] * (cdf + v * _INV_SQRT_2PI * _exp(-_HALF * v * v))


@numba.njit(**_JIT, inline="always")
def _softmax_row_(row, masked_row_value, scale):
    """softmax(scale * row) in place, scale > 0 (attention folds 1/sqrt(d) in here instead of scaling q)."""
    cols = row.shape[0]
    m = _row_max(row)
    if m == -np.inf:
        has_nan = False
        for j in range(cols):
            has_nan |= row[j] != row[j]
        row[:] = np.nan if has_nan else masked_row_value
        return
    z = _F(0.0)
    for j in range(cols):
        e = _exp((row[j] - m) * scale)
        row[j] = e
        z += e
    inv = _ONE / z
    for j in range(cols):
        row[j] *= inv


@numba.njit(**_JIT)
def softmax_rows(x, out, masked_row_value):
    """``softmax_rows_`` of ``x`` written into ``out`` (no copy of the input first)."""
    for i in range(x.shape[0]):
        row = out[i]
        row[:] = x[i]
        _softmax_row_(row, masked_row_value, _ONE)


@numba.njit(**_JIT)
def softmax_rows_(p, masked_row_value, scale):
    """Softmax of each row of the (R, C) array ``scale * p`` in place (scale > 0); a row whose entries are
    all -inf becomes ``masked_row_value`` (0 for attention, NaN for torch.softmax)."""
    for i in range(p.shape[0]):
        _softmax_row_(p[i], masked_row_value, scale)


@numba.njit(**_JIT)
def masked_softmax_rows_(p, mask):
    """Attention's softmax: row r of the (R, C) scores ``p`` gets row ``r % M`` of the
    additive (M, C) ``mask`` added, then softmax in place; rows with every key masked become 0."""
    rows, cols = p.shape
    period = mask.shape[0]
    for i in range(rows):
        row = p[i]
        mrow = mask[i % period]
        for j in range(cols):
            row[j] += mrow[j]
        _softmax_row_(row, _F(0.0), _ONE)


@numba.njit(**_JIT)
def softmax_stats_rows(x, p, row_max, row_sum):
    """p = softmax of each row of the (R, C) array x, with each row's max and sum of exp(x - max) (what
    cross-entropy needs for log-sum-exp)."""
    rows, cols = x.shape
    for i in range(rows):
        m = _row_max(x[i])
        z = _F(0.0)
        for j in range(cols):
            e = _exp(x[i, j] - m)
            p[i, j] = e
            z += e
        inv = _ONE / z
        for j in range(cols):
            p[i, j] *= inv
        row_max[i] = m
        row_sum[i] = z


@numba.njit(**_JIT)
def softmax_grad_rows(g, y, out):
    """out = y * (g - sum(g * y)) row by row (the backward of softmax over the last axis)."""
    rows, cols = y.shape
    for i in range(rows):
        s = _F(0.0)
        for j in range(cols):
            s += g[i, j] * y[i, j]
        for j in range(cols):
            out[i, j] = y[i, j] * (g[i, j] - s)


@numba.njit(**_JIT)
def layer_norm(x, res, has_res, xb, has_xb, w, b, eps, out, xhat, rstd, keep_xhat):
    """Row-wise (s - mean) / sqrt(var + eps) * w + b with s = x (+ res when ``has_res``: a residual added in
    the same pass; + xb (D,) when ``has_xb``: the bias of the linear layer before) for (R, D) arrays; w, b of
    length D (ones/zeros when the layer has none). Writes the normalised rows to ``xhat`` when ``keep_xhat``
    (backward needs them; inference does not). Two passes over each row (mean, then variance of the centred
    row) keep float32 exact enough for rows with a large mean.

    Each case has its own plain loop: with the flags tested inside one loop, the residual + input-bias case
    compiled to slow code (4096 x 384 in isolation: 1.2-32 ms against 0.56-0.60 ms now, on this 2-core VM)."""
    rows, d = x.shape
    inv_d = _F(1.0 / d)
    for i in range(rows):
        o, xi = out[i], x[i]
        if has_res and has_xb:
            ri = res[i]
            for j in range(d):
                o[j] = xi[j] + ri[j] + xb[j]
        elif has_res:
            ri = res[i]
            for j in range(d):
                o[j] = xi[j] + ri[j]
        elif has_xb:
            for j in range(d):
                o[j] = xi[j] + xb[j]
        else:
            for j in range(d):
                o[j] = xi[j]
        mean = _F(0.0)
        for j in range(d):
            mean += o[j]
        mean *= inv_d
        var = _F(0.0)
        for j in range(d):
            c = o[j] - mean
            o[j] = c
            var += c * c
        r = _ONE / np.sqrt(var * inv_d + eps)  # np.sqrt keeps float32 (math.sqrt would give float64)
        rstd[i] = r
        if keep_xhat:
            xh = xhat[i]
            for j in range(d):
                h = o[j] * r
                xh[j] = h
                o[j] = h * w[j] + b[j]
        else:
            for j in range(d):
                o[j] = o[j] * r * w[j] + b[j]


@numba.njit(**_JIT)
def layer_norm_grad(g, xhat, rstd, w, gx, sum_w, sum_b, need_x):
    """gx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) with gh = g * w for the rows given, and adds these
    rows' sums of g * xhat and g into ``sum_w``, ``sum_b`` (the weight and bias gradients)."""
    rows, d = g.shape
    inv_d = _F(1.0 / d)
    for i in range(rows):
        s1 = _F(0.0)
        s2 = _F(0.0)
        for j in range(d):
            gij = g[i, j]
            sum_w[j] += gij * xhat[i, j]
            sum_b[j] += gij
            gh = gij * w[j]
            s1 += gh
            s2 += gh * xhat[i, j]
        if need_x:
            s1 *= inv_d
            s2 *= inv_d
            r = rstd[i]
            for j in range(d):
                gx[i, j] = r * (g[i, j] * w[j] - s1 - xhat[i, j] * s2)


@numba.njit(**_JIT)
def adam_step(x, g, m, v, beta1, beta2, step_size, bc2_sqrt, eps, decay, l2, sign):
    """One Adam/AdamW update of flat float32 arrays in place (torch.optim.Adam's formula: ``sign`` -1 for
    maximize, ``l2`` the L2 penalty of Adam, ``decay`` = 1 - lr * weight_decay of AdamW)."""
    for i in range(x.size):
        gi = sign * g[i] + l2 * x[i]
        mi = m[i] + (gi - m[i]) * (_ONE - beta1)
        vi = beta2 * v[i] + (_ONE - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        x[i] = x[i] * decay - step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)
