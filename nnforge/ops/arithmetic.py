"""Arithmetic with broadcasting: add, sub, mul, div, neg, pow, matmul, remainder, floor_divide."""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, shape_of, unbroadcast
from .cast import cast
from .elision import reuse_target


def _broadcast_error(op: str, a: Any, b: Any) -> RuntimeError:
    return RuntimeError(f"{op}: shapes {shape_of(a)} and {shape_of(b)} cannot be broadcast together")


class Add(Function):
    uses_inputs = False

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = (shape_of(a), shape_of(b))
        try:
            return self.backend.binary(self.backend.xp.add, a, b)
        except ValueError:
            raise _broadcast_error("add", a, b) from None

    def backward(self, g: Any) -> tuple:
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if need_a else None,
                unbroadcast(g, self.shapes[1]) if need_b else None)


class Sub(Function):
    uses_inputs = False

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = (shape_of(a), shape_of(b))
        try:
            return self.backend.binary(self.backend.xp.subtract, a, b)
        except ValueError:
            raise _broadcast_error("sub", a, b) from None

    def backward(self, g: Any) -> tuple:
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if need_a else None,
                unbroadcast(-g, self.shapes[1]) if need_b else None)


class Mul(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.saved = (a, b)
        try:
            return self.backend.binary(self.backend.xp.multiply, a, b)
        except ValueError:
            raise _broadcast_error("mul", a, b) from None

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        mul = self.backend.xp.multiply
        return (unbroadcast(self.backend.binary(mul, g, b), a.shape) if need_a else None,
                unbroadcast(self.backend.binary(mul, g, a), b.shape) if need_b else None)


class Div(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.saved = (a, b)
        try:
            return self.backend.binary(self.backend.xp.true_divide, a, b)
        except ValueError:
            raise _broadcast_error("div", a, b) from None

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = unbroadcast(g / b, shape_of(a)) if need_a else None
        gb = unbroadcast(-g * a / (b * b), shape_of(b)) if need_b else None
        return ga, gb


class Neg(Function):
    uses_inputs = False

    def forward(self, a: Any) -> Any:
        return -a

    def backward(self, g: Any) -> Any:
        return -g


class PowScalar(Function):
    """x ** c for a Python number c; small integer powers use multiplications (NumPy's float32 power
    is hundreds of times slower than x*x*x)."""

    def forward(self, a: Any, c: float) -> Any:
        self.saved = a
        self.c = c
        if c == 2:
            return a * a
        if c == 3:
            kernels = self.backend.kernels_for(a) if a.size >= 1 << 16 else None
            if kernels is not None:
                return kernels.cube(a)  # one pass instead of two
            out = a * a
            out *= a  # in place: one temporary fewer than a * a * a
            return out
        if c == 1:
            return a.copy()
        if c == 0.5:
            return self.backend.xp.sqrt(a)
        if c == -1:
            return 1 / a
        return self.backend.xp.power(a, c)

    def backward(self, g: Any) -> tuple:
        a, c = self.saved, self.c
        if c == 2:
            return (2 * a * g, None)
        if c == 3:
            return (3 * (a * a) * g, None)
        if c == 1:
            return (g, None)
        return (g * c * self.backend.xp.power(a, c - 1), None)


class Pow(Function):
    """base ** exponent with at least one tensor operand (the other may be a Python number)."""

    uses_output = True

    def forward(self, a: Any, b: Any) -> Any:
        xp = self.backend.xp
        try:
            out = xp.power(a, b)
        except ValueError:
            raise _broadcast_error("pow", a, b) from None
        self.saved = (a, b, out)
        return out

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        a, b, out = self.saved
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            with xp.errstate(divide="ignore", invalid="ignore"):
                ga = g * b * xp.power(a, b - 1)
            # d/da a**0 = 0 everywhere, also at a == 0 (not 0 * inf), as torch does
            ga = unbroadcast(xp.where(b == 0, 0, ga).astype(out.dtype, copy=False), shape_of(a))
        if need_b:
            with xp.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.log(a) if hasattr(a, "dtype") else math.log(a) if a > 0 else float("nan")
                gb = g * out * log_a
            # d/db a**b at a == 0 is taken as 0 for b >= 0 (as torch does), not 0 * -inf
            if hasattr(a, "dtype"):
                gb = xp.where((a == 0) & (b >= 0), 0, gb)
            elif a == 0:
                gb = xp.where(b >= 0, 0, gb)
            gb = unbroadcast(gb.astype(out.dtype, copy=False), shape_of(b))
        return ga, gb


def _swap(x: Any) -> Any:
    return x.swapaxes(-1, -2)


class MatMul(Function):
    def forward(self, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        self.saved = (a, b)
        try:
            return self.backend.xp.matmul(a, b)
        except ValueError:
            k_a = a.shape[-1]
            k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
            raise RuntimeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                               f"(inner dims {k_a} != {k_b}, or batch dims do not broadcast)") from None

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        a2 = a[None, :] if a.ndim == 1 else a  # (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K, 1)
        g2 = g
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)  # after the line above, so that a 0-d g (vector @ vector) works
        ga = gb = None
        if need_a:
            ga = unbroadcast(xp.matmul(g2, _swap(b2)), a2.shape).reshape(a.shape)
        if need_b:
            if b2.ndim == 2 and a2.ndim > 2:
                # weight shared over a batch: one GEMM over all rows instead of a batched GEMM and a sum
                k, n = b2.shape
                gb = xp.matmul(a2.reshape(-1, k).T, g2.reshape(-1, n))
            else:
                gb = unbroadcast(xp.matmul(_swap(a2), g2), b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


class Remainder(Function):
    """Python-style modulo (sign of the divisor), like torch.remainder; d/da = 1, d/db = -floor(a/b)."""

    def forward(self, a: Any, b: Any) -> Any:
        self.saved = (a, b)
        try:
            return self.backend.xp.remainder(a, b)
        except ValueError:
            raise _broadcast_error("remainder", a, b) from None

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = unbroadcast(g, shape_of(a)) if need_a else None
        gb = unbroadcast(-g * self.backend.xp.floor_divide(a, b), shape_of(b)) if need_b else None
        return ga, gb


# -- functions (the Tensor operators call these) -------------------------------------------------------
def add(a: Any, b: Any, alpha: Any = 1) -> Tensor:
    a, b = promote(a, b)
    out = reuse_target("add", a, b) if alpha == 1 else None
    if out is not None:
        return _into(out, a, a._backend.xp.add, b)
    return Add.apply(a, b if alpha == 1 else b * alpha)


def sub(a: Any, b: Any, alpha: Any = 1) -> Tensor:
    a, b = promote(a, b)
    out = reuse_target("sub", a, b) if alpha == 1 else None
    if out is not None:
        return _into(out, a, a._backend.xp.subtract, b)
    return Sub.apply(a, b if alpha == 1 else b * alpha)


def mul(a: Any, b: Any) -> Tensor:
    a, b = promote(a, b)
    out = reuse_target("mul", a, b)
    if out is not None:
        return _into(out, a, a._backend.xp.multiply, b)
    return Mul.apply(a, b)


def _into(out: Any, a: Tensor, ufunc: Any, b: Any) -> Tensor:
    """The result of a binary op written into the temporary ``a``'s array (see ``elision``)."""
    a._backend.binary(ufunc, out, b.data if isinstance(b, Tensor) else b, out=out)
    return Tensor._make(out, a._device)


def div(a: Any, b: Any, rounding_mode: str | None = None) -> Tensor:
    a, b = promote(a, b)
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        from .math import trunc
        return trunc(Div.apply(*_as_float(a, b)))
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    return Div.apply(*_as_float(a, b))


def _as_float(a: Any, b: Any) -> tuple:
    """True division of integers gives the default float dtype."""
    t = a if isinstance(a, Tensor) else b
    if t.dtype.kind in "biu":
        a = cast(a, "float32") if isinstance(a, Tensor) else a
        b = cast(b, "float32") if isinstance(b, Tensor) else b
    return a, b


def neg(a: Tensor) -> Tensor:
    return Neg.apply(a)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - torch name
    if isinstance(a, Tensor) and not isinstance(b, Tensor) and isinstance(b, (int, float)):
        if a.dtype.kind in "biu" and (isinstance(b, float) or b < 0):
            if isinstance(b, float):
                a = cast(a, "float32")
            else:
                raise RuntimeError("pow: integers to negative integer powers are not allowed")
        return PowScalar.apply(a, c=b)
    a, b = promote(a, b)
    return Pow.apply(a, b)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    a, b = promote(a, b)
    return MatMul.apply(a, b)


def remainder(a: Any, b: Any) -> Tensor:
    a, b = promote(a, b)
    return Remainder.apply(a, b)


def floor_divide(a: Any, b: Any) -> Tensor:
    """Floor division; not differentiable (like torch), so the result never requires grad."""
    a, b = promote(a, b)
    t = a if isinstance(a, Tensor) else b
    xa = a.data if isinstance(a, Tensor) else a
    xb = b.data if isinstance(b, Tensor) else b
    try:
        out = t._backend.xp.floor_divide(xa, xb)
    except ValueError:
        raise _broadcast_error("floor_divide", xa, xb) from None
    return Tensor._make(t._backend.asarray(out), t._device)


subtract = sub
multiply = mul
divide = div

