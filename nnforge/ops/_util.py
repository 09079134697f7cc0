"""Helpers shared by ops: gradient reduction over broadcast dims, dim normalisation, operand promotion."""
from __future__ import annotations

from typing import Any

from .. import dtypes as _dt
from ..tensor import Tensor


def unbroadcast(g: Any, shape: tuple) -> Any:
    """Sum ``g`` over the dimensions that broadcasting added or stretched, so it has ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def norm_axes(dim: Any, ndim: int, op: str) -> tuple | None:
    """``dim`` (None, int, or sequence) as a sorted tuple of non-negative axes; None means all."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = max(ndim, 1)
    out = []
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"{op}: dimension {d} out of range for a tensor of {ndim} dims "
                             f"(expected in [{-n}, {n - 1}])")
        out.append(d % n)
    if len(set(out)) != len(out):
        raise RuntimeError(f"{op}: dim {dim} names the same dimension twice")
    return tuple(sorted(out)) if ndim else ()


def wrap_dim(dim: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension {dim} out of range for a tensor of {ndim} dims "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n


def as_tensor_like(x: Any, like: Tensor) -> Tensor:
    """Array-likes that meet a tensor in an op become tensors on its device (no grad)."""
    return x if isinstance(x, Tensor) else Tensor(x, device=like._device)


def is_scalar(x: Any) -> bool:
    return isinstance(x, (int, float, bool)) or (hasattr(x, "item") and getattr(x, "ndim", 1) == 0
                                                 and not isinstance(x, Tensor))


def promote(a: Any, b: Any) -> tuple:
    """Bring two operands to torch's result dtype. Python scalars stay scalars ("weak" types: a float
    scalar never widens a float32 tensor); NumPy arrays become tensors."""
    from .cast import cast

    if not isinstance(a, Tensor):
        if is_scalar(a):
            a = a.item() if hasattr(a, "item") else a
            dt = _dt.scalar_result_type(b.dtype, a)
            return a, (b if dt == b.dtype else cast(b, dt))
        a = as_tensor_like(a, b)
    if not isinstance(b, Tensor):
        if is_scalar(b):
            b = b.item() if hasattr(b, "item") else b
            dt = _dt.scalar_result_type(a.dtype, b)
            return (a if dt == a.dtype else cast(a, dt)), b
        b = as_tensor_like(b, a)
    if a.dtype != b.dtype:
        dt = _dt.result_type(a.dtype, a.ndim, b.dtype, b.ndim)
        if a.dtype != dt:
            a = cast(a, dt)
        if b.dtype != dt:
            b = cast(b, dt)
    return a, b


def shape_of(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else ()
