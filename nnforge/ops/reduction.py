"""Reductions over ``dim`` (int, tuple or None = all) with ``keepdim``: sum, mean, var, std, amax, amin,
max/min (with indices), argmax, argmin, prod, logsumexp, cumsum, norm."""
from __future__ import annotations

import builtins as _builtins
from collections import namedtuple
from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import norm_axes, wrap_dim
from .cast import cast

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand_back(g: Any, axes: tuple | None, keepdim: bool, shape: tuple, xp: Any) -> Any:
    """Undo a reduction's shape change on ``g`` so it broadcasts against the input (a view, no copy)."""
    if not keepdim and shape:
        g = g.reshape([1 if (axes is None or i in axes) else n for i, n in enumerate(shape)])
    return xp.broadcast_to(g, shape)


def _count(shape: tuple, axes: tuple | None) -> int:
    n = 1
    for i, s in enumerate(shape):
        if axes is None or i in axes:
            n *= s
    return n


_COMPILED_SUM_MIN = 1 << 16  # elements: smaller sums stay NumPy's (exactly its result)


def _compiled_kernels(backend: Any, a: Any, axes: Any) -> Any:
    """The compiled kernels for a reduction of a large float32 array over everything or its last axis (NumPy
    reduces on one thread: sums at ~1/6 of torch's speed, amax over rows 4-7x its time); None where they do
    not apply."""
    if a.size < _COMPILED_SUM_MIN or not (axes is None or axes == (a.ndim - 1,)):
        return None
    return backend.kernels_for(a)


def _keepdims_shape(a: Any, axes: Any) -> list:
    return [1] * a.ndim if axes is None else [*a.shape[:-1], 1]


def _compiled_sum(backend: Any, a: Any, axes: Any, keepdim: bool) -> Any:
    """The compiled sum where ``_compiled_kernels`` applies, else None."""
    kernels = _compiled_kernels(backend, a, axes)
    if kernels is None:
        return None
    out = kernels.sum(a, last_axis=axes is not None)
    return out.reshape(_keepdims_shape(a, axes)) if keepdim else out


def _compiled_extreme(backend: Any, a: Any, axes: Any, largest: bool) -> Any:
    """amax/amin (keepdims shape) where ``_compiled_kernels`` applies, else None."""
    kernels = _compiled_kernels(backend, a, axes)
    if kernels is None:
        return None
    return kernels.extreme(a, last_axis=axes is not None, largest=largest).reshape(_keepdims_shape(a, axes))


class Sum(Function):
    uses_inputs = False

    def forward(self, a: Any, axes: Any, keepdim: bool) -> Any:
        self.args = (axes, keepdim, a.shape)
        out = _compiled_sum(self.backend, a, axes, keepdim)
        return a.sum(axis=axes, keepdims=keepdim) if out is None else out

    def backward(self, g: Any) -> Any:
        axes, keepdim, shape = self.args
        return _expand_back(g, axes, keepdim, shape, self.backend.xp)


class Mean(Function):
    uses_inputs = False

    def forward(self, a: Any, axes: Any, keepdim: bool) -> Any:
        self.args = (axes, keepdim, a.shape)
        out = _compiled_sum(self.backend, a, axes, keepdim)
        if out is None:
            return a.mean(axis=axes, keepdims=keepdim)
        out /= _count(a.shape, axes)
        return out

    def backward(self, g: Any) -> Any:
        axes, keepdim, shape = self.args
        n = _count(shape, axes)
        return _expand_back(g / n if n else g, axes, keepdim, shape, self.backend.xp)


class Var(Function):
    def forward(self, a: Any, axes: Any, correction: float, keepdim: bool) -> Any:
        mean = a.mean(axis=axes, keepdims=True)
        centered = a - mean
        self.saved = centered
        self.args = (axes, keepdim, a.shape, correction)
        n = _count(a.shape, axes)
        sq = centered * centered
        with self.backend.xp.errstate(divide="ignore", invalid="ignore"):  # n <= correction: inf/nan, as torch
            return sq.sum(axis=axes, keepdims=keepdim) / a.dtype.type(_builtins.max(n - correction, 0))

    def backward(self, g: Any) -> Any:
        axes, keepdim, shape, correction = self.args
        dof = _builtins.max(_count(shape, axes) - correction, 0)
        g = _expand_back(g, axes, keepdim, shape, self.backend.xp)
        return g * self.saved * (2.0 / dof if dof else float("inf"))


class AMax(Function):
    """amax/amin: ties share the gradient equally (torch's amax and full max() do the same)."""

    uses_output = True

    def forward(self, a: Any, axes: Any, keepdim: bool, largest: bool) -> Any:
        if a.size == 0 and (axes is None or any(a.shape[i] == 0 for i in axes)):
            raise RuntimeError(f"{'amax' if largest else 'amin'}: reduction over a zero-size dimension "
                               f"(shape {a.shape}) has no identity")
        out = _compiled_extreme(self.backend, a, axes, largest)
        if out is None:
            out = a.max(axis=axes, keepdims=True) if largest else a.min(axis=axes, keepdims=True)
        self.saved = (a, out)
        self.args = (axes, keepdim, a.shape)
        return out if keepdim else out.reshape([n for i, n in enumerate(a.shape) if axes is not None and i not in axes])

    def backward(self, g: Any) -> Any:
        a, out = self.saved
        axes, keepdim, shape = self.args
        mask = (a == out).astype(g.dtype)
        mask /= mask.sum(axis=axes, keepdims=True)
        return _expand_back(g, axes, keepdim, shape, self.backend.xp) * mask


class TakeAlongDim(Function):
    """Values at given indices along one axis (the differentiable half of max(dim)/min(dim))."""

    uses_inputs = False

    def forward(self, a: Any, idx: Any, axis: int, keepdim: bool) -> Any:
        self.args = (idx, axis, keepdim, a.shape)
        out = self.backend.xp.take_along_axis(a, idx, axis=axis)
        return out if keepdim else out.squeeze(axis)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        idx, axis, keepdim, shape = self.args
        ga = xp.zeros(shape, dtype=g.dtype)
        xp.put_along_axis(ga, idx, g if keepdim else xp.expand_dims(g, axis), axis=axis)
        return ga, None


class Prod(Function):
    def forward(self, a: Any, axis: Any, keepdim: bool) -> Any:
        self.saved = a
        self.args = (axis, keepdim)
        return a.prod(axis=axis, keepdims=keepdim)

    def backward(self, g: Any) -> Any:
        # product of all the other elements, via exclusive cumulative products (exact with zeros)
        xp = self.backend.xp
        a = self.saved
        axis, keepdim = self.args
        if a.size == 0:
            return xp.zeros(a.shape, dtype=g.dtype)
        moved = a.reshape(-1) if axis is None else xp.moveaxis(a, axis, -1)
        ones = xp.ones(moved.shape[:-1] + (1,), dtype=a.dtype)
        left = xp.concatenate([ones, xp.cumprod(moved[..., :-1], axis=-1)], axis=-1)
        right = xp.flip(xp.concatenate([ones, xp.cumprod(xp.flip(moved[..., 1:], -1), axis=-1)], axis=-1), -1)
        others = left * right
        others = others.reshape(a.shape) if axis is None else xp.moveaxis(others, -1, axis)
        axes = None if axis is None else (axis,)
        return _expand_back(g, axes, keepdim, a.shape, xp) * others


class LogSumExp(Function):
    uses_output = True

    def forward(self, a: Any, axes: Any, keepdim: bool) -> Any:
        xp = self.backend.xp
        m = a.max(axis=axes, keepdims=True) if a.size else xp.zeros([1] * a.ndim, a.dtype)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows: exp(-inf - 0) = 0, log(0) = -inf, as expected
        with_errstate = xp.errstate(divide="ignore")
        with with_errstate:
            out = xp.log(xp.exp(a - m).sum(axis=axes, keepdims=True)) + m
        self.saved = (a, out)
        self.args = (axes, keepdim, a.shape)
        return out if keepdim else out.reshape([n for i, n in enumerate(a.shape) if axes is not None and i not in axes])

    def backward(self, g: Any) -> Any:
        a, out = self.saved
        axes, keepdim, shape = self.args
        xp = self.backend.xp
        return _expand_back(g, axes, keepdim, shape, xp) * xp.exp(a - out)


class CumSum(Function):
    uses_inputs = False

    def forward(self, a: Any, axis: int) -> Any:
        self.axis = axis
        return self.backend.xp.cumsum(a, axis=axis)

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        return xp.flip(xp.cumsum(xp.flip(g, self.axis), axis=self.axis), self.axis)


class Norm2(Function):
    """Euclidean norm; the gradient at a zero norm is taken as 0 (like torch), not NaN."""

    uses_output = True

    def forward(self, a: Any, axes: Any, keepdim: bool) -> Any:
        xp = self.backend.xp
        out = xp.sqrt((a * a).sum(axis=axes, keepdims=True))
        self.saved = (a, out)
        self.args = (axes, keepdim, a.shape)
        return out if keepdim else out.reshape([n for i, n in enumerate(a.shape) if axes is not None and i not in axes])

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        a, out = self.saved
        axes, keepdim, shape = self.args
        safe = xp.where(out == 0, 1, out)
        scale = xp.where(out == 0, 0, 1 / safe)
        return _expand_back(g, axes, keepdim, shape, xp) * a * scale


# -- functions -----------------------------------------------------------------------------------------
def sum(a: Tensor, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:  # noqa: A001
    if dtype is not None:
        a = cast(a, dtype)
    return Sum.apply(a, norm_axes(dim, a.ndim, "sum"), keepdim)


def _require_float(a: Tensor, op: str) -> None:
    if a.dtype.kind not in "fc":
        raise RuntimeError(f"{op}(): input dtype must be floating point, got {a.dtype} "
                           f"(convert with .float() first)")


def mean(a: Tensor, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    if dtype is not None:
        a = cast(a, dtype)
    _require_float(a, "mean")
    return Mean.apply(a, norm_axes(dim, a.ndim, "mean"), keepdim)


def _correction(unbiased: Any, correction: Any) -> float:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(a: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *, correction: Any = None) -> Tensor:
    """Variance with Bessel's ``correction`` (default 1; ``unbiased=False`` means 0), like torch.var."""
    _require_float(a, "var")
    return Var.apply(a, norm_axes(dim, a.ndim, "var"), _correction(unbiased, correction), keepdim)


def std(a: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *, correction: Any = None) -> Tensor:
    from .math import sqrt
    return sqrt(var(a, dim, unbiased, keepdim, correction=correction))


def amax(a: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """torch.amax: ``dim=()`` (the default) reduces all dims."""
    axes = norm_axes(dim, a.ndim, "amax") if dim != () else None
    return AMax.apply(a, axes or None, keepdim, True)


def amin(a: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    axes = norm_axes(dim, a.ndim, "amin") if dim != () else None
    return AMax.apply(a, axes or None, keepdim, False)


def _max_min(a: Tensor, dim: Any, keepdim: bool, largest: bool, op: str):
    if dim is None:
        if isinstance(keepdim, bool) and keepdim:
            raise TypeError(f"{op}(): keepdim needs a dim")
        return AMax.apply(a, None, False, largest)
    if isinstance(dim, Tensor):  # torch.max(a, b) is the elementwise maximum
        from .math import maximum, minimum
        return maximum(a, dim) if largest else minimum(a, dim)
    axis = wrap_dim(dim, a.ndim, op)
    if a.ndim and a.shape[axis] == 0:
        raise IndexError(f"{op}(): dimension {dim} has size 0, there is no {op}imum")
    xp = a._backend.xp
    data = a.data if a.ndim else a.data.reshape(1)
    ax = axis if a.ndim else 0
    idx = xp.argmax(data, axis=ax, keepdims=True) if largest else xp.argmin(data, axis=ax, keepdims=True)
    src = a if a.ndim else a.reshape(1)
    values = TakeAlongDim.apply(src, idx, ax, keepdim or a.ndim == 0)
    if a.ndim == 0:
        values = values.reshape(())
        idx = idx.reshape(())
    indices = Tensor._make(idx if keepdim else xp.squeeze(idx, axis=ax) if a.ndim else idx, a._device)
    return values_indices(values, indices)


def max(a: Tensor, dim: Any = None, keepdim: bool = False):  # noqa: A001
    """``max()`` -> the largest value; ``max(dim)`` -> (values, indices); ``max(other)`` -> maximum."""
    return _max_min(a, dim, keepdim, True, "max")


def min(a: Tensor, dim: Any = None, keepdim: bool = False):  # noqa: A001
    return _max_min(a, dim, keepdim, False, "min")


def _arg(a: Tensor, dim: Any, keepdim: bool, largest: bool, op: str) -> Tensor:
    xp = a._backend.xp
    if a.data.size == 0:
        raise RuntimeError(f"{op}(): cannot take the {op} of an empty tensor")
    f = xp.argmax if largest else xp.argmin
    if dim is None:
        out = f(a.data.reshape(-1))
        if keepdim:
            out = xp.reshape(out, [1] * a.ndim)
    else:
        axis = wrap_dim(dim, a.ndim, op)
        out = f(a.data, axis=axis, keepdims=keepdim) if a.ndim else f(a.data.reshape(1))
    return Tensor._make(xp.asarray(out, dtype="int64"), a._device)


def argmax(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _arg(a, dim, keepdim, True, "argmax")


def argmin(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _arg(a, dim, keepdim, False, "argmin")


def prod(a: Tensor, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    if dtype is not None:
        a = cast(a, dtype)
    axis = None if dim is None else wrap_dim(dim, a.ndim, "prod")
    if a.ndim == 0:
        axis = None
    return Prod.apply(a, axis, keepdim)


def logsumexp(a: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    _require_float(a, "logsumexp")
    return LogSumExp.apply(a, norm_axes(dim, a.ndim, "logsumexp"), keepdim)


def cumsum(a: Tensor, dim: int, dtype: Any = None) -> Tensor:
    if dtype is not None:
        a = cast(a, dtype)
    if a.ndim == 0:
        return cast(a, a.dtype) if dtype is None else a
    return CumSum.apply(a, wrap_dim(dim, a.ndim, "cumsum"))


def norm(a: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (all elements by default); p in 'fro', 2, 1, inf, -inf or any number."""
    from .arithmetic import pow as apow
    from .math import abs as _abs
    _require_float(a, "norm")
    axes = norm_axes(dim, a.ndim, "norm")
    if p in ("fro", 2, 2.0):
        return Norm2.apply(a, axes, keepdim)
    if p == float("inf"):
        return amax(_abs(a), axes if axes is not None else (), keepdim)
    if p == float("-inf"):
        return amin(_abs(a), axes if axes is not None else (), keepdim)
    if p in (1, 1.0):
        return sum(_abs(a), axes, keepdim)
    if not isinstance(p, (int, float)):
        raise ValueError(f"norm: unsupported p={p!r}")
    return apow(sum(apow(_abs(a), p), axes, keepdim), 1.0 / p)
