"""Fused normalisation layers with hand-written backward: layer_norm, rms_norm, batch_norm.

Composed from primitives each would take ~10 passes over memory forward and more backward; the fused
versions keep one normalised copy (``xhat``) and the per-row scale for backward.
"""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


def _rowdot(xp: Any, a: Any, b: Any) -> Any:
    """Row-wise dot products of two (R, D) arrays -> (R, 1), as a batched GEMV (BLAS; faster than einsum)."""
    return xp.matmul(a[:, None, :], b[:, :, None])[:, 0]


def _rowmean(xp: Any, a: Any) -> Any:
    """Row means of an (R, D) array -> (R, 1), as one GEMV (faster than ``a.mean(axis=1)``)."""
    return xp.matmul(a, xp.full((a.shape[1], 1), 1.0 / a.shape[1], dtype=a.dtype))


def _like_shape(xp: Any, shape: tuple, d: int, dtype: Any) -> tuple:
    """A fresh array of ``shape`` plus its (R, d) view: results written through the view stay owned by the
    caller (no defensive copy when they become a leaf's .grad)."""
    out = xp.empty(shape, dtype=dtype)
    return out, out.reshape(-1, d)


_BLOCK_ELEMS = 1 << 17  # rows per block * D: the few arrays a block touches stay in L2 across its passes


def _row_blocks(r: int, d: int) -> list:
    step = max(1, _BLOCK_ELEMS // max(d, 1))
    return [slice(i, min(i + step, r)) for i in range(0, r, step)]


class LayerNorm(Function):
    """Normalise over the trailing ``D`` elements of each row, then scale/shift: x viewed as (R, D).
    With ``residual`` (x's shape) the rows normalised are x + residual, summed in the same pass (post-LN
    blocks: ``LayerNorm(sublayer(h) + h)``), and both get the same gradient; with ``input_bias`` (one row)
    that row is added to every row too (the bias of the linear layer before, instead of a pass of its own).

    Works on blocks of rows so that its ~6 passes per block hit the cache instead of main memory."""
    uses_inputs = False

    def forward(self, x: Any, w: Any, b: Any, d: int, eps: float, residual: Any = None,
                input_bias: Any = None) -> Any:
        xp = self.backend.xp
        self.x_shape = x.shape
        self.p_shape = x.shape[x.ndim - (w if w is not None else b).ndim:] if w is not None or b is not None \
            else None
        self.input_bias_shape = None if input_bias is None else input_bias.shape
        x2 = x.reshape(-1, d)
        r2 = None if residual is None else residual.reshape(-1, d)
        self.kernels = self.backend.kernels_for(x2, w, b, r2, input_bias)
        if self.kernels is not None:
            out, xhat, rstd = self.kernels.layer_norm(x2, w, b, eps, r2, keep_xhat=self.records,
                                                      input_bias=input_bias)
            self.saved = (xhat, rstd, w)
            return out.reshape(x.shape)
        if r2 is not None:
            x2 = x2 + r2
        if input_bias is not None:
            x2 = x2 + input_bias.reshape(-1)
        r = x2.shape[0]
        xhat = xp.empty_like(x2)
        rstd = xp.empty((r, 1), dtype=x.dtype)
        out, o2 = _like_shape(xp, x.shape, d, x.dtype)
        mean_vec = xp.full((d, 1), 1.0 / d, dtype=x.dtype)
        w1 = w.reshape(-1) if w is not None else None
        b1 = b.reshape(-1) if b is not None else None
        for sl in _row_blocks(r, d):
            xb, hb, rb, ob = x2[sl], xhat[sl], rstd[sl], o2[sl]
            xp.subtract(xb, xp.matmul(xb, mean_vec), out=hb)
            xp.matmul(hb[:, None, :], hb[:, :, None], out=rb[:, :, None])
            rb *= 1.0 / d
            rb += eps
            xp.sqrt(rb, out=rb)
            xp.divide(1, rb, out=rb)
            hb *= rb
            if w1 is not None:
                xp.multiply(hb, w1, out=ob)
            else:
                ob[...] = hb
            if b1 is not None:
                ob += b1
        self.saved = (xhat, rstd, w)
        return out

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        xhat, rstd, w = self.saved
        r, d = xhat.shape
        g2 = g.reshape(-1, d)
        need_w, need_b = self.needs_input_grad[1:3]
        # the residual and the input bias, when there are, get x's gradient (the bias summed over rows)
        need_x = any(self.needs_input_grad[i] for i in (0, 5, 6) if i < len(self.needs_input_grad))
        if self.kernels is not None:
            gx2, gw, gb = self.kernels.layer_norm_grad(g2, xhat, rstd, w, need_x)
            return self._grads(None if gx2 is None else gx2.reshape(self.x_shape), gw if need_w else None,
                               gb if need_b else None)
        gw = xp.zeros(d, dtype=g.dtype) if need_w else None
        gb = xp.zeros(d, dtype=g.dtype) if need_b else None
        gx = gh = None
        if need_x:
            gx, gh = _like_shape(xp, self.x_shape, d, g.dtype)
        mean_vec = xp.full((d, 1), 1.0 / d, dtype=g.dtype)
        w1 = w.reshape(-1) if w is not None else None
        for sl in _row_blocks(r, d):
            g_b, hb = g2[sl], xhat[sl]
            if need_w:
                gw += xp.einsum("ij,ij->j", g_b, hb)
            if need_b:
                gb += xp.matmul(xp.ones(g_b.shape[0], dtype=g.dtype), g_b)
            if need_x:
                # dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = g * w
                ob = gh[sl]
                if w1 is not None:
                    xp.multiply(g_b, w1, out=ob)
                else:
                    ob[...] = g_b
                proj = xp.matmul(ob[:, None, :], hb[:, :, None])[:, 0]
                proj *= 1.0 / d
                tmp = hb * proj
                tmp += xp.matmul(ob, mean_vec)
                ob -= tmp
                ob *= rstd[sl]
        return self._grads(gx, gw, gb)

    def _grads(self, gx: Any, gw: Any, gb: Any) -> tuple:
        """The gradient tuple of (x, w, b, d, eps, residual, input_bias): the residual's is x's (the same
        array; the engine accumulates an array handed to two inputs without modifying it in place), the input
        bias's is x's summed over the rows."""
        needs = self.needs_input_grad + (False,) * (7 - len(self.needs_input_grad))
        gw = None if gw is None else gw.reshape(self.p_shape)
        gb = None if gb is None else gb.reshape(self.p_shape)
        gxb = gx.reshape(-1, math.prod(self.input_bias_shape)).sum(axis=0).reshape(self.input_bias_shape) \
            if needs[6] else None
        return (gx if needs[0] else None), gw, gb, None, None, (gx if needs[5] else None), gxb


class RMSNorm(Function):
    """x * rsqrt(mean(x^2) + eps) * w over the trailing ``D`` elements of each row."""
    uses_inputs = False

    def forward(self, x: Any, w: Any, d: int, eps: float) -> Any:
        xp = self.backend.xp
        x2 = x.reshape(-1, d)
        r = _rowdot(xp, x2, x2)
        r *= 1.0 / d
        r += eps
        xp.sqrt(r, out=r)
        xp.divide(1, r, out=r)
        xhat = x2 * r
        self.saved = (xhat, r, w)
        self.x_shape = x.shape
        out = xhat * w.reshape(-1) if w is not None else xhat.copy()
        return out.reshape(x.shape)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        xhat, r, w = self.saved
        d = xhat.shape[1]
        g2 = g.reshape(-1, d)
        need_x, need_w = self.needs_input_grad[:2]
        gw = xp.einsum("ij,ij->j", g2, xhat).reshape(w.shape) if need_w else None
        gx = None
        if need_x:
            gh = g2 * w.reshape(-1) if w is not None else g2.copy()
            proj = _rowdot(xp, gh, xhat)
            proj *= 1.0 / d
            gh -= xhat * proj
            gh *= r
            gx = gh.reshape(self.x_shape)
        return gx, gw


class BatchNorm(Function):
    """x viewed as (N, C, M): normalise each channel over N and M with the batch statistics (training) or
    with given mean/var (evaluation), then scale/shift per channel."""
    uses_inputs = False

    def forward(self, x: Any, w: Any, b: Any, mean: Any, var: Any, eps: float, stats_out: list | None = None) -> Any:
        xp = self.backend.xp
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        self.batch_stats = mean is None
        if self.batch_stats:
            cnt = x3.shape[0] * x3.shape[2]
            mean = x3.sum(axis=(0, 2)) / x3.dtype.type(cnt)
            xhat = x3 - mean[:, None]
            var = xp.einsum("ncm,ncm->c", xhat, xhat) / x3.dtype.type(cnt)
            if stats_out is not None:
                stats_out.append((mean, var))  # batch_norm() updates the running statistics with these
        else:
            xhat = x3 - mean.astype(x.dtype, copy=False)[:, None]
        rstd = 1.0 / xp.sqrt(var.astype(x.dtype, copy=False) + x.dtype.type(eps))
        xhat *= rstd[:, None]
        self.saved = (xhat, rstd, w)
        self.x_shape = x.shape
        out = xhat * w[:, None] if w is not None else xhat.copy()
        if b is not None:
            out += b[:, None]
        return out.reshape(x.shape)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        xhat, rstd, w = self.saved
        g3 = g.reshape(xhat.shape)
        need_x, need_w, need_b = self.needs_input_grad[:3]
        gw = xp.einsum("ncm,ncm->c", g3, xhat) if need_w else None
        gb = g3.sum(axis=(0, 2)) if need_b else None
        gx = None
        if need_x:
            scale = rstd if w is None else rstd * w
            if self.batch_stats:
                cnt = xhat.shape[0] * xhat.shape[2]
                sum_g = gb if gb is not None else g3.sum(axis=(0, 2))
                sum_gx = gw if gw is not None else xp.einsum("ncm,ncm->c", g3, xhat)
                gx = xhat * (sum_gx / cnt)[:, None]
                gx += (sum_g / cnt)[:, None]
                xp.subtract(g3, gx, out=gx)
                gx *= scale[:, None]
            else:
                gx = g3 * scale[:, None]
            gx = gx.reshape(self.x_shape)
        return gx, gw, gb, None, None


def _check_norm_param(op: str, name: str, p: Any, shape: tuple) -> None:
    if p is not None and tuple(p.shape) != shape:
        raise RuntimeError(f"{op}: {name} of shape {tuple(p.shape)} does not match the normalized shape {shape}")


def _normalized(op: str, input: Tensor, normalized_shape: Any) -> tuple:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise RuntimeError(f"{op}: expected input with trailing shape {shape} (normalized_shape), got input of "
                           f"shape {tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating point input, got {input.dtype}")
    return shape


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims (biased variance), then ``* weight + bias``."""
    shape = _normalized("layer_norm", input, normalized_shape)
    _check_norm_param("layer_norm", "weight", weight, shape)
    _check_norm_param("layer_norm", "bias", bias, shape)
    return LayerNorm.apply(input, weight, bias, math.prod(shape), float(eps))


def add_layer_norm(input: Tensor, residual: Tensor, normalized_shape: Any, weight: Tensor | None = None,
                   bias: Tensor | None = None, eps: float = 1e-5, input_bias: Tensor | None = None) -> Tensor:
    """``layer_norm(input + residual (+ input_bias), ...)`` with the sum formed inside the normalisation's own
    pass (no separate tensor for it): the residual connection of post-LN transformer blocks (BERT).
    ``input_bias`` (of ``normalized_shape``) is the bias of the linear layer that produced ``input``, left out
    of it so that it costs no pass over the output of its own."""
    if tuple(residual.shape) != tuple(input.shape) or residual.dtype != input.dtype:
        raise RuntimeError(f"add_layer_norm: residual of shape {tuple(residual.shape)} and dtype {residual.dtype} "
                           f"must match the input's {tuple(input.shape)} and {input.dtype}")
    shape = _normalized("add_layer_norm", input, normalized_shape)
    _check_norm_param("add_layer_norm", "weight", weight, shape)
    _check_norm_param("add_layer_norm", "bias", bias, shape)
    _check_norm_param("add_layer_norm", "input_bias", input_bias, shape)
    if input_bias is not None and input_bias.dtype != input.dtype:
        raise RuntimeError(f"add_layer_norm: input_bias dtype {input_bias.dtype} must match the input's "
                           f"{input.dtype}")
    return LayerNorm.apply(input, weight, bias, math.prod(shape), float(eps), residual, input_bias)


def rms_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing dims; eps defaults to the dtype's epsilon."""
    shape = _normalized("rms_norm", input, normalized_shape)
    _check_norm_param("rms_norm", "weight", weight, shape)
    if eps is None:
        eps = float(input._backend.xp.finfo(input.dtype).eps)
    return RMSNorm.apply(input, weight, math.prod(shape), float(eps))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over dim 1 of an (N, C, *) input.

    Training: normalise with the batch statistics and, if running stats are given, update them in place:
    ``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased). Evaluation: use the
    running statistics."""
    if input.ndim < 2:
        raise RuntimeError(f"batch_norm: expected an input of at least 2 dims (N, C, *), got shape "
                           f"{tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise RuntimeError(f"batch_norm: {name} of shape {tuple(t.shape)} does not match the {c} channels of "
                               f"input of shape {tuple(input.shape)}")
    if not training:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var are required when training=False")
        return BatchNorm.apply(input, weight, bias, running_mean.data, running_var.data, float(eps))
    cnt = input.data.size // c
    if cnt <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of shape "
                         f"{tuple(input.shape)}")
    stats: list = []
    out = BatchNorm.apply(input, weight, bias, None, None, float(eps), stats)
    if running_mean is not None and running_var is not None:
        mean, var = stats[0]
        with no_grad():
            running_mean.mul_(1 - momentum).add_(mean.astype(running_mean.dtype, copy=False) * momentum)
            running_var.mul_(1 - momentum).add_(var.astype(running_var.dtype, copy=False)
                                                * (momentum * cnt / (cnt - 1)))
    return out
