"""Fused activation kernels: softmax, log_softmax, gelu (exact and tanh), silu.

Each could be composed from primitives; fused versions make one or two passes over memory instead of
five to ten, and are numerically stable for large logits (the row max is subtracted first).
"""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import wrap_dim
from .cast import cast

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Softmax(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any, axis: int) -> Any:
        xp = self.backend.xp
        self.axis = axis
        self.kernels = self.backend.kernels_for(a) if axis is not None and axis == a.ndim - 1 else None
        if self.kernels is not None:
            self.saved = out = self.kernels.softmax(a)
            return out
        out = xp.subtract(a, a.max(axis=axis, keepdims=True), out=xp.empty_like(a))  # an array also when 0-d
        xp.exp(out, out=out)
        out /= out.sum(axis=axis, keepdims=True)
        self.saved = out
        return out

    def backward(self, g: Any) -> Any:
        y = self.saved
        if self.kernels is not None:
            return self.kernels.softmax_grad(g, y)
        gy = g * y
        gy -= y * gy.sum(axis=self.axis, keepdims=True)
        return gy


class LogSoftmax(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any, axis: int) -> Any:
        xp = self.backend.xp
        shifted = a - a.max(axis=axis, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        shifted -= lse
        self.saved = shifted
        self.axis = axis
        return shifted

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        return g - xp.exp(self.saved) * g.sum(axis=self.axis, keepdims=True)


class Gelu(Function):
    """x * Phi(x) (exact, with erf) or the tanh approximation.

    With the compiled kernels forward and backward are one pass each and only the input is kept (backward
    recomputes Phi); the NumPy path keeps Phi (or tanh) as well to save recomputing it."""

    def forward(self, a: Any, approximate: str) -> Any:
        xp = self.backend.xp
        self.approximate = approximate
        self.kernels = self.backend.kernels_for(a)
        if self.kernels is not None:
            self.saved = a
            return self.kernels.gelu(a, approximate)
        if approximate == "tanh":
            inner = a * a
            inner *= 0.044715
            inner += 1
            inner *= a
            inner *= _SQRT_2_OVER_PI
            th = xp.tanh(inner)
            self.saved = (a, th)
            out = th + 1
            out *= a
            out *= 0.5
            return out
        cdf = self.backend.erf(a * _INV_SQRT_2)
        cdf += 1
        cdf *= 0.5
        self.saved = (a, cdf)
        return a * cdf

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        if self.kernels is not None:
            return self.kernels.gelu_grad(g, self.saved, self.approximate)
        a, t = self.saved
        if self.approximate == "tanh":
            # d/da 0.5 a (1 + tanh(u)), u = c (a + 0.044715 a^3)
            du = (a * a) * (3 * 0.044715)
            du += 1
            du *= _SQRT_2_OVER_PI
            sech2 = 1 - t * t
            d = 0.5 * (1 + t) + 0.5 * a * sech2 * du
            return g * d
        pdf = xp.exp(-0.5 * (a * a))
        pdf *= _INV_SQRT_2PI
        pdf *= a
        pdf += t
        return g * pdf


class Silu(Function):
    def forward(self, a: Any) -> Any:
        s = self.backend.sigmoid(a)
        self.saved = (a, s)
        return a * s

    def backward(self, g: Any) -> Any:
        a, s = self.saved
        return g * (s * (1 + a * (1 - s)))


def _floating(a: Tensor) -> Tensor:
    return cast(a, "float32") if a.dtype.kind in "biu" else a


def softmax(a: Tensor, dim: int = -1, dtype: Any = None) -> Tensor:
    a = cast(a, dtype) if dtype is not None else _floating(a)
    return Softmax.apply(a, wrap_dim(dim, a.ndim, "softmax") if a.ndim else None)


def log_softmax(a: Tensor, dim: int = -1, dtype: Any = None) -> Tensor:
    a = cast(a, dtype) if dtype is not None else _floating(a)
    return LogSoftmax.apply(a, wrap_dim(dim, a.ndim, "log_softmax") if a.ndim else None)


def gelu(a: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_floating(a), approximate)


def silu(a: Tensor) -> Tensor:
    return Silu.apply(_floating(a))
