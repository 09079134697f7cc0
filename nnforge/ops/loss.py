"""Losses and a few functional helpers: cross_entropy, nll_loss, binary_cross_entropy(_with_logits),
mse_loss, l1_loss, smooth_l1_loss, cosine_similarity, normalize, one_hot, pad.

cross_entropy and the binary losses are fused Functions: they never build the log-probability graph, stay
finite for huge logits, and their backward is one pass (softmax - target, scaled).
"""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import unbroadcast

_REDUCTIONS = ("none", "mean", "sum")


def _rows(xp: Any, x: Any) -> Any:
    """(N, C, d1, ...) -> (N*d1*..., C), class dim last; (R, C) unchanged."""
    return x if x.ndim == 2 else xp.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(xp: Any, g: Any, shape: tuple) -> Any:
    """Inverse of ``_rows`` for a gradient."""
    if len(shape) == 2:
        return g
    return xp.ascontiguousarray(xp.moveaxis(g.reshape((shape[0],) + shape[2:] + (shape[1],)), -1, 1))


def _reduce(l: Any, reduction: str, denom: Any = None) -> Any:
    if reduction == "none":
        return l
    total = l.sum()
    if reduction == "sum":
        return total
    return total / (denom if denom is not None else l.dtype.type(l.size))


def _scale(g: Any, reduction: str, n: Any) -> Any:
    """Upstream gradient per element: g itself ('none'/'sum') or g / n ('mean')."""
    return g / n if reduction == "mean" else g


def _check_targets(xp: Any, t: Any, ignore_index: int, c: int, op: str) -> Any:
    valid = t != ignore_index
    if t.size:
        tv = t[valid] if not bool(valid.all()) else t
        if tv.size:
            lo, hi = int(tv.min()), int(tv.max())
            if lo < 0 or hi >= c:
                raise IndexError(f"{op}: target {lo if lo < 0 else hi} is out of bounds for {c} classes "
                                 f"(expected 0 <= target < {c}, or ignore_index={ignore_index})")
    return valid


class CrossEntropy(Function):
    """log_softmax + nll (or soft-target cross entropy) in one op; logits (N, C) or (N, C, d1, ...).
    Reads the logits in backward only for the gradient of probability targets."""

    def forward(self, x: Any, target: Any, weight: Any, ignore_index: int, smoothing: float, reduction: str,
                soft: bool) -> Any:
        xp = self.backend.xp
        self.x_shape = x.shape
        c = x.shape[1]
        x2 = _rows(xp, x)
        r = x2.shape[0]
        # logsumexp = m + log(s) with m the row max and s = sum(exp(x - m)); kept apart because
        # lse - x[t] = (m - x[t]) + log(s) loses no digits for large logits (1e4 + 0.69 rounds to a multiple
        # of 2**-10 in float32)
        kernels = self.backend.kernels_for(x2)
        if kernels is not None:
            p, m, s = kernels.softmax_with_stats(x2)
            logs = xp.log(s, out=s)  # (R,)
        else:
            m = x2.max(axis=1, keepdims=True)
            p = x2 - m
            xp.exp(p, out=p)
            s = xp.matmul(p, xp.ones((c, 1), dtype=p.dtype))  # row sums as one GEMV (faster than .sum(axis=1))
            p /= s
            logs = xp.log(s, out=s)[:, 0]  # (R,)
            m = m[:, 0]
        eps = smoothing
        if soft:
            q = _rows(xp, target).astype(x.dtype, copy=False)
            if eps:
                q = q * (1 - eps) + eps / c
            if weight is not None:
                q = q * weight
            rowsum = q.sum(axis=1)
            shifted = m[:, None] - x2  # (R, C), >= 0
            loss = rowsum * logs + xp.einsum("ij,ij->i", q, shifted)
            self.denom = x.dtype.type(r)
            self.saved = (p, q, shifted, logs, weight)
            self.rowsum = rowsum
        else:
            t = target.reshape(-1)
            valid = _check_targets(xp, t, ignore_index, c, "cross_entropy")
            ts = xp.where(valid, t, 0)
            wt = valid.astype(x.dtype) if weight is None else weight[ts] * valid
            rows = xp.arange(r)
            loss = wt * ((m - x2[rows, ts]) + logs)
            rowsum = wt
            if eps:
                wsum = weight.sum() if weight is not None else c
                xw = (m[:, None] - x2) @ (weight if weight is not None else xp.ones(c, dtype=x2.dtype))
                smooth = valid * (wsum * logs + xw)
                loss = loss * (1 - eps) + smooth * (eps / c)
                rowsum = wt * (1 - eps) + valid * (wsum * (eps / c))
            self.denom = wt.sum()
            self.saved = (p, ts, wt, valid, weight)
            self.rowsum = rowsum
        self.soft, self.eps, self.reduction = soft, eps, reduction
        loss = loss.astype(x.dtype, copy=False)
        if reduction == "none":
            return loss.reshape((x.shape[0],) + x.shape[2:])
        return _reduce(loss, reduction, self.denom)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        gs = _scale(g, self.reduction, self.denom)
        gs = gs.reshape(-1) if self.reduction == "none" else gs
        need_x, need_t = self.needs_input_grad[:2]
        c = self.x_shape[1]
        gx = gt = None
        if self.soft:
            p, q, shifted, logs, weight = self.saved
            col = gs[:, None] if self.reduction == "none" else gs
            if need_x:
                gx = p * (self.rowsum * gs)[:, None]
                gx -= q * col
                gx = _unrows(xp, gx, self.x_shape)
            if need_t:
                # d loss / d target = -(1 - eps) * weight * log_softmax(x)
                gt = (shifted + logs[:, None]) * col
                if self.eps:
                    gt *= 1 - self.eps
                if weight is not None:
                    gt *= weight
                gt = _unrows(xp, gt, self.x_shape)
        elif need_x:
            p, ts, wt, valid, weight = self.saved
            gx = p * (self.rowsum * gs)[:, None]
            pick = wt * gs
            if self.eps:
                pick = pick * (1 - self.eps)
                sm = (valid * gs) * (self.eps / c)
                gx -= sm[:, None] * weight if weight is not None else sm[:, None]
            gx[xp.arange(gx.shape[0]), ts] -= pick
            gx = _unrows(xp, gx, self.x_shape)
        return gx, gt


class NLLLoss(Function):
    """Negative log likelihood of log-probabilities (N, C) or (N, C, d1, ...) at class-index targets."""
    uses_inputs = False

    def forward(self, x: Any, target: Any, weight: Any, ignore_index: int, reduction: str) -> Any:
        xp = self.backend.xp
        self.x_shape = x.shape
        x2 = _rows(xp, x)
        t = target.reshape(-1)
        valid = _check_targets(xp, t, ignore_index, x.shape[1], "nll_loss")
        ts = xp.where(valid, t, 0)
        wt = valid.astype(x.dtype) if weight is None else weight[ts] * valid
        loss = -(wt * x2[xp.arange(x2.shape[0]), ts])
        self.denom = wt.sum()
        self.saved = (ts, wt)
        self.reduction = reduction
        if reduction == "none":
            return loss.reshape((x.shape[0],) + x.shape[2:])
        return _reduce(loss, reduction, self.denom)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        ts, wt = self.saved
        gs = _scale(g, self.reduction, self.denom)
        gs = gs.reshape(-1) if self.reduction == "none" else gs
        gx = xp.zeros((ts.shape[0], self.x_shape[1]), dtype=wt.dtype)
        gx[xp.arange(ts.shape[0]), ts] = -(wt * gs)
        return _unrows(xp, gx, self.x_shape), None


class BinaryCrossEntropy(Function):
    """-w [t log p + (1-t) log(1-p)] with the logs clamped at -100 (as torch)."""

    def forward(self, p: Any, t: Any, w: Any, reduction: str) -> Any:
        xp = self.backend.xp
        if p.size and (float(p.min()) < 0 or float(p.max()) > 1):
            raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 and 1 "
                               "(use binary_cross_entropy_with_logits for logits)")
        with xp.errstate(divide="ignore"):
            logp = xp.maximum(xp.log(p), -100)
            log1mp = xp.maximum(xp.log1p(-p), -100)
        loss = t * (logp - log1mp)
        loss += log1mp
        xp.negative(loss, out=loss)
        if w is not None:
            loss = loss * w
        self.saved = (p, t, w, logp, log1mp)
        self.reduction = reduction
        self.n = loss.dtype.type(loss.size)
        return _reduce(loss, reduction)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        p, t, w, logp, log1mp = self.saved
        gs = _scale(g, self.reduction, self.n)
        if w is not None:
            gs = gs * w
        need_p, need_t = self.needs_input_grad[:2]
        gp = gt = None
        if need_p:
            gp = (p - t) / xp.maximum(p * (1 - p), p.dtype.type(1e-12)) * gs
            gp = unbroadcast(xp.broadcast_to(gp, p.shape) if gp.shape != p.shape else gp, p.shape)
        if need_t:
            gt = unbroadcast(xp.broadcast_to((log1mp - logp) * gs, t.shape), t.shape)
        return gp, gt


class BinaryCrossEntropyWithLogits(Function):
    """-w [pw t log s(x) + (1-t) log(1-s(x))], computed as (1-t) x + (1 + (pw-1) t) softplus(-x)."""

    def forward(self, x: Any, t: Any, w: Any, pw: Any, reduction: str) -> Any:
        xp = self.backend.xp
        sp_neg = xp.log1p(xp.exp(-xp.abs(x)))  # softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)
        sp_neg += xp.maximum(-x, 0)
        if pw is None:
            loss = (1 - t) * x + sp_neg
        else:
            loss = (1 - t) * x + (1 + (pw - 1) * t) * sp_neg
        if w is not None:
            loss = loss * w
        self.saved = (x, t, w, pw, sp_neg)
        self.reduction = reduction
        self.n = loss.dtype.type(loss.size)
        return _reduce(loss, reduction)

    def backward(self, g: Any) -> tuple:
        sig = self.backend.sigmoid
        x, t, w, pw, sp_neg = self.saved
        gs = _scale(g, self.reduction, self.n)
        if w is not None:
            gs = gs * w
        need_x, need_t, need_w, need_pw = (tuple(self.needs_input_grad) + (False,) * 4)[:4]
        gx = gt = None
        s = sig(x)
        if need_x:
            gx = s - t if pw is None else s * (pw * t + (1 - t)) - pw * t
            gx = unbroadcast(gx * gs, x.shape)
        if need_t:
            # d/dt = pw softplus(-x) - softplus(x), softplus(x) = softplus(-x) + x
            gt = sp_neg - (sp_neg + x) if pw is None else pw * sp_neg - (sp_neg + x)
            gt = unbroadcast(gt * gs, t.shape)
        return gx, gt, None, None


class Pad(Function):
    """Constant padding (negative amounts crop); ``widths`` is ((before, after), ...) per dim."""
    uses_inputs = False

    def forward(self, a: Any, widths: tuple, value: float) -> Any:
        xp = self.backend.xp
        crop = tuple(slice(-min(b, 0), a.shape[i] + min(e, 0)) for i, (b, e) in enumerate(widths))
        grow = tuple((max(b, 0), max(e, 0)) for b, e in widths)
        self.args = (a.shape, crop, grow)
        return xp.pad(a[crop], grow, mode="constant", constant_values=value)

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        shape, crop, grow = self.args
        inner = g[tuple(slice(b, g.shape[i] - e) for i, (b, e) in enumerate(grow))]
        if inner.shape == shape:
            return inner
        ga = xp.zeros(shape, dtype=g.dtype)
        ga[crop] = inner
        return ga


class GatherPad(Function):
    """reflect / replicate / circular padding: one index array per padded dim; backward scatters back."""
    uses_inputs = False

    def forward(self, a: Any, widths: tuple, mode: str) -> Any:
        xp = self.backend.xp
        np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
        self.args = (a.shape, [])
        out = a
        for d, (b, e) in enumerate(widths):
            if b == 0 and e == 0:
                continue
            idx = xp.pad(xp.arange(a.shape[d]), (b, e), mode=np_mode)
            self.args[1].append((d, idx))
            out = xp.take(out, idx, axis=d)
        return out

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        shape, steps = self.args
        for d, idx in reversed(steps):
            acc = xp.zeros(g.shape[:d] + (shape[d],) + g.shape[d + 1:], dtype=g.dtype)
            xp.add.at(acc, (slice(None),) * d + (idx,), g)
            g = acc
        return g


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _data(t: Any) -> Any:
    return None if t is None else t.data if isinstance(t, Tensor) else t


def _as_weight(weight: Any, like: Tensor, c: int, op: str) -> Any:
    if weight is None:
        return None
    w = weight if isinstance(weight, Tensor) else Tensor(weight, device=like.device)
    if tuple(w.shape) != (c,):
        raise RuntimeError(f"{op}: weight of shape {tuple(w.shape)} should have one entry per class ({c})")
    return w.data.astype(like.dtype, copy=False)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy between logits ``input`` (N, C) / (N, C, d1, ...) / (C,) and ``target`` given as class
    indices (N) / (N, d1, ...) or as class probabilities of the input's shape.

    >>> F.cross_entropy(nf.randn(4, 3), nf.tensor([0, 2, 1, 1]))
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if input.dtype.kind != "f":
        raise RuntimeError(f"cross_entropy: expected floating point logits, got {input.dtype}")
    if input.ndim == 1:  # unbatched
        out = cross_entropy(input.reshape(1, -1), target.reshape((1,) + tuple(target.shape)), weight,
                            ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
        return out.reshape(()) if reduction == "none" else out
    if input.ndim == 0:
        raise RuntimeError("cross_entropy: expected input of shape (N, C) or (N, C, d1, ...), got a 0-d tensor")
    c = input.shape[1]
    w = _as_weight(weight, input, c, "cross_entropy")
    soft = target.dtype.kind == "f"
    if soft:
        if tuple(target.shape) != tuple(input.shape):
            hint = ("; these look like class labels: give them as integers (int64), e.g. labels.long()"
                    if tuple(target.shape) == (input.shape[0],) + tuple(input.shape[2:]) else "")
            raise RuntimeError(f"cross_entropy: probability targets must have the input's shape "
                               f"{tuple(input.shape)}, got {tuple(target.shape)} ({target.dtype} targets are read "
                               f"as class probabilities{hint})")
        return CrossEntropy.apply(input, target, w, ignore_index, float(label_smoothing), reduction, True)
    if target.dtype.kind not in "iu":
        raise RuntimeError(f"cross_entropy: target must be class indices (int64) or probabilities (float), "
                           f"got {target.dtype}")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise RuntimeError(f"cross_entropy: class-index target of shape {tuple(target.shape)} does not match "
                           f"input of shape {tuple(input.shape)} (expected {expected})")
    return CrossEntropy.apply(input, target, w, ignore_index, float(label_smoothing), reduction, False)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of log-probabilities ``input`` (N, C) / (N, C, d1, ...) at class indices."""
    _check_reduction("nll_loss", reduction)
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if input.ndim == 1:
        out = nll_loss(input.reshape(1, -1), target.reshape(1), weight, ignore_index=ignore_index,
                       reduction=reduction)
        return out.reshape(()) if reduction == "none" else out
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if target.dtype.kind not in "iu" or tuple(target.shape) != expected:
        raise RuntimeError(f"nll_loss: expected integer target of shape {expected} for input of shape "
                           f"{tuple(input.shape)}, got {target.dtype} target of shape {tuple(target.shape)}")
    w = _as_weight(weight, input, input.shape[1], "nll_loss")
    return NLLLoss.apply(input, target, w, ignore_index, reduction)


def _same_shape(op: str, input: Tensor, target: Any) -> Tensor:
    if not isinstance(target, Tensor):
        target = Tensor(target, dtype=input.dtype, device=input.device)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: target size {tuple(target.shape)} must be the same as input size "
                         f"{tuple(input.shape)}")
    if target.dtype != input.dtype:
        target = target.to(input.dtype)
    return target


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
                         reduce: Any = None, reduction: str = "mean") -> Tensor:
    """BCE between probabilities ``input`` and ``target`` (same shape); ``weight`` broadcasts."""
    _check_reduction("binary_cross_entropy", reduction)
    target = _same_shape("binary_cross_entropy", input, target)
    return BinaryCrossEntropy.apply(input, target, _data(weight), reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """sigmoid + BCE in one stable op (finite for any logit); ``pos_weight`` weighs positives per class
    (broadcast along the last dim), ``weight`` weighs elements."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    target = _same_shape("binary_cross_entropy_with_logits", input, target)
    return BinaryCrossEntropyWithLogits.apply(input, target, _data(weight), _data(pos_weight), reduction)


def _finish(l: Tensor, reduction: str) -> Tensor:
    return l if reduction == "none" else l.sum() if reduction == "sum" else l.mean()


def _diff(op: str, input: Tensor, target: Any, reduction: str) -> Tensor:
    _check_reduction(op, reduction)
    if not isinstance(target, Tensor):
        target = Tensor(target, dtype=input.dtype, device=input.device)
    return input - target


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    d = _diff("mse_loss", input, target, reduction)
    return _finish(d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean") -> Tensor:
    return _finish(_diff("l1_loss", input, target, reduction).abs(), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta=0 is l1_loss)."""
    from .indexing import where
    d = _diff("smooth_l1_loss", input, target, reduction)
    ad = d.abs()
    if beta == 0:
        return _finish(ad, reduction)
    return _finish(where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta), reduction)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1.x2 / sqrt(max(|x1|^2 |x2|^2, eps^2)) along ``dim`` (broadcasting)."""
    w12 = (x1 * x2).sum(dim)
    n = (x1 * x1).sum(dim) * (x2 * x2).sum(dim)
    return w12 / n.clamp(min=eps * eps).sqrt()


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p, eps) along ``dim``."""
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: shape + (num_classes,) (num_classes = max + 1 when -1)."""
    xp = tensor._backend.xp
    if tensor.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot: expected an integer tensor of class indices, got {tensor.dtype}")
    idx = tensor.data
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes}), got values in "
                           f"[{int(idx.min())}, {int(idx.max())}]")
    out = (idx[..., None] == xp.arange(num_classes)).astype("int64")
    return Tensor._make(out, tensor.device)


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad with torch's tuple order: (left, right) of the last dim, then (top, bottom) of the one before, ...

    Modes: 'constant' (negative amounts crop), 'reflect', 'replicate', 'circular'."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding of length {len(pad)} must be even and at most 2 * ndim "
                         f"({2 * input.ndim}) for input of shape {tuple(input.shape)}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    widths = tuple(widths)
    if mode == "constant":
        return Pad.apply(input, widths, 0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported (constant, reflect, replicate, circular)")
    if any(b < 0 or e < 0 for b, e in widths):
        raise ValueError(f"pad: negative padding is only supported in constant mode, got {pad}")
    return GatherPad.apply(input, widths, mode)
