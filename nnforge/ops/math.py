"""Elementwise math: exp, log, log1p, sqrt, rsqrt, abs, sign, sin, cos, tanh, sigmoid, relu, erf, clamp,
maximum, minimum, floor, ceil, round, trunc."""
from __future__ import annotations

import math as _math
from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, shape_of, unbroadcast
from .cast import cast


class Exp(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        self.saved = out = self.backend.unary(self.backend.xp.exp, a)
        return out

    def backward(self, g: Any) -> Any:
        return self.backend.binary(self.backend.xp.multiply, g, self.saved)


class Log(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.unary(self.backend.xp.log, a)

    def backward(self, g: Any) -> Any:
        return g / self.saved


class Log1p(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.xp.log1p(a)

    def backward(self, g: Any) -> Any:
        return g / (1 + self.saved)


class Sqrt(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        self.saved = out = self.backend.unary(self.backend.xp.sqrt, a)
        return out

    def backward(self, g: Any) -> Any:
        return g / (2 * self.saved)


class Rsqrt(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        xp = self.backend.xp
        out = xp.sqrt(a, out=xp.empty_like(a))  # out= keeps a 0-d result an array (in-place divide next)
        xp.divide(1, out, out=out)
        self.saved = out
        return out

    def backward(self, g: Any) -> Any:
        out = self.saved
        return g * (-0.5 * out * out * out)


class Abs(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.unary(self.backend.xp.abs, a)

    def backward(self, g: Any) -> Any:
        return g * self.backend.xp.sign(self.saved)


class Sin(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.unary(self.backend.xp.sin, a)

    def backward(self, g: Any) -> Any:
        return g * self.backend.xp.cos(self.saved)


class Cos(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.unary(self.backend.xp.cos, a)

    def backward(self, g: Any) -> Any:
        return -g * self.backend.xp.sin(self.saved)


class Tanh(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        self.saved = out = self.backend.unary(self.backend.xp.tanh, a)
        return out

    def backward(self, g: Any) -> Any:
        out = self.saved
        return g * (1 - out * out)


class Sigmoid(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        self.saved = out = self.backend.sigmoid(a)
        return out

    def backward(self, g: Any) -> Any:
        out = self.saved
        return g * out * (1 - out)


class Relu(Function):
    uses_inputs, uses_output = False, True

    def forward(self, a: Any) -> Any:
        kernels = self.backend.kernels_for()  # one compiled pass in a's layout (None: NumPy's maximum)
        out = kernels.relu(a) if kernels is not None else None
        self.saved = out = self.backend.xp.maximum(a, 0) if out is None else out
        return out

    def backward(self, g: Any) -> Any:
        kernels = self.backend.kernels_for()
        gx = kernels.relu_grad(g, self.saved) if kernels is not None else None
        # torch's rule: zero where the output is <= 0, so a NaN output passes its gradient through
        return g * ~(self.saved <= 0) if gx is None else gx


class Erf(Function):
    def forward(self, a: Any) -> Any:
        self.saved = a
        return self.backend.erf(a)

    def backward(self, g: Any) -> Any:
        a = self.saved
        xp = self.backend.xp
        return g * (2.0 / _math.sqrt(_math.pi)) * xp.exp(-(a * a))


class Clamp(Function):
    """Gradient passes where min <= x <= max (bounds inclusive, like torch)."""

    def forward(self, a: Any, lo: Any, hi: Any) -> Any:
        self.saved = a
        self.bounds = (lo, hi)
        return self.backend.xp.clip(a, lo, hi)

    def backward(self, g: Any) -> tuple:
        a = self.saved
        lo, hi = self.bounds
        keep = None
        if lo is not None:
            keep = a >= lo
        if hi is not None:
            keep = (a <= hi) if keep is None else keep & (a <= hi)
        ga = g if keep is None else g * keep
        return ga, None, None


class Maximum(Function):
    """Ties split the gradient equally between both inputs, like torch."""

    def forward(self, a: Any, b: Any) -> Any:
        self.saved = (a, b)
        try:
            return self.backend.xp.maximum(a, b)
        except ValueError:
            raise RuntimeError(f"maximum: shapes {shape_of(a)} and {shape_of(b)} cannot be broadcast") from None

    def backward(self, g: Any) -> tuple:
        return _select_backward(self, g, greater=True)


class Minimum(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.saved = (a, b)
        try:
            return self.backend.xp.minimum(a, b)
        except ValueError:
            raise RuntimeError(f"minimum: shapes {shape_of(a)} and {shape_of(b)} cannot be broadcast") from None

    def backward(self, g: Any) -> tuple:
        return _select_backward(self, g, greater=False)


def _select_backward(fn: Function, g: Any, greater: bool) -> tuple:
    xp = fn.backend.xp
    a, b = fn.saved
    wins = (a > b) if greater else (a < b)
    w_a = xp.where(a == b, 0.5, wins.astype(g.dtype)).astype(g.dtype, copy=False)
    need_a, need_b = fn.needs_input_grad
    return (unbroadcast(g * w_a, shape_of(a)) if need_a else None,
            unbroadcast(g * (1 - w_a), shape_of(b)) if need_b else None)


class ZeroGrad(Function):
    """Piecewise-constant functions (floor, ceil, round, sign, trunc): the gradient is zero."""

    uses_inputs = False

    def forward(self, a: Any, fn_name: str) -> Any:
        return getattr(self.backend.xp, fn_name)(a)

    def backward(self, g: Any) -> tuple:
        return self.backend.xp.zeros_like(g), None


# -- functions -----------------------------------------------------------------------------------------
def _floating(a: Tensor) -> Tensor:
    """Transcendental functions of integer tensors give the default float dtype (as in torch)."""
    return cast(a, "float32") if a.dtype.kind in "biu" else a


def exp(a: Tensor) -> Tensor:
    return Exp.apply(_floating(a))


def log(a: Tensor) -> Tensor:
    return Log.apply(_floating(a))


def log1p(a: Tensor) -> Tensor:
    return Log1p.apply(_floating(a))


def sqrt(a: Tensor) -> Tensor:
    return Sqrt.apply(_floating(a))


def rsqrt(a: Tensor) -> Tensor:
    return Rsqrt.apply(_floating(a))


def abs(a: Tensor) -> Tensor:  # noqa: A001
    return Abs.apply(a)


def sin(a: Tensor) -> Tensor:
    return Sin.apply(_floating(a))


def cos(a: Tensor) -> Tensor:
    return Cos.apply(_floating(a))


def tanh(a: Tensor) -> Tensor:
    return Tanh.apply(_floating(a))


def sigmoid(a: Tensor) -> Tensor:
    return Sigmoid.apply(_floating(a))


def relu(a: Tensor) -> Tensor:
    return Relu.apply(a)


def erf(a: Tensor) -> Tensor:
    return Erf.apply(_floating(a))


def clamp(a: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = a
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if a.dtype.kind in "biu" and any(isinstance(v, float) for v in (min, max)):
        a = cast(a, "float32")
    return Clamp.apply(a, min, max)


def maximum(a: Any, b: Any) -> Tensor:
    a, b = promote(a, b)
    return Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    a, b = promote(a, b)
    return Minimum.apply(a, b)


def sign(a: Tensor) -> Tensor:
    return ZeroGrad.apply(a, "sign")


def floor(a: Tensor) -> Tensor:
    return ZeroGrad.apply(a, "floor")


def ceil(a: Tensor) -> Tensor:
    return ZeroGrad.apply(a, "ceil")


def round(a: Tensor, decimals: int = 0) -> Tensor:  # noqa: A001
    """Round half to even, like torch.round."""
    if decimals:
        scale = 10.0 ** decimals
        return ZeroGrad.apply(a * scale, "round") / scale
    return ZeroGrad.apply(a, "round")


def trunc(a: Tensor) -> Tensor:
    return ZeroGrad.apply(a, "trunc")


clip = clamp
