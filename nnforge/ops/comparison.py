"""Comparisons and logical ops: results are bool tensors outside the graph (no gradient)."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from ._util import promote, shape_of


def _compare(name: str, a: Any, b: Any) -> Tensor:
    a, b = promote(a, b)
    t = a if isinstance(a, Tensor) else b
    xa = a.data if isinstance(a, Tensor) else a
    xb = b.data if isinstance(b, Tensor) else b
    try:
        out = getattr(t._backend.xp, name)(xa, xb)
    except ValueError:
        raise RuntimeError(f"{name}: shapes {shape_of(xa)} and {shape_of(xb)} cannot be broadcast together") from None
    return Tensor._make(t._backend.asarray(out), t._device)


def eq(a: Any, b: Any) -> Tensor:
    return _compare("equal", a, b)


def ne(a: Any, b: Any) -> Tensor:
    return _compare("not_equal", a, b)


def lt(a: Any, b: Any) -> Tensor:
    return _compare("less", a, b)


def le(a: Any, b: Any) -> Tensor:
    return _compare("less_equal", a, b)


def gt(a: Any, b: Any) -> Tensor:
    return _compare("greater", a, b)


def ge(a: Any, b: Any) -> Tensor:
    return _compare("greater_equal", a, b)


def logical_and(a: Any, b: Any) -> Tensor:
    return _compare("logical_and", a, b)


def logical_or(a: Any, b: Any) -> Tensor:
    return _compare("logical_or", a, b)


def logical_xor(a: Any, b: Any) -> Tensor:
    return _compare("logical_xor", a, b)


def logical_not(a: Tensor) -> Tensor:
    return Tensor._make(a._backend.xp.logical_not(a.data), a._device)


def isnan(a: Tensor) -> Tensor:
    return Tensor._make(a._backend.xp.isnan(a.data), a._device)


def isinf(a: Tensor) -> Tensor:
    return Tensor._make(a._backend.xp.isinf(a.data), a._device)


def isfinite(a: Tensor) -> Tensor:
    return Tensor._make(a._backend.xp.isfinite(a.data), a._device)


def allclose(a: Tensor, b: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    xb = b.data if isinstance(b, Tensor) else b
    return bool(a._backend.xp.allclose(a.data, xb, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a.data == b.data).all())


def any(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return Tensor._make(a._backend.xp.asarray(a.data.any(axis=dim, keepdims=keepdim)), a._device)


def all(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return Tensor._make(a._backend.xp.asarray(a.data.all(axis=dim, keepdims=keepdim)), a._device)
