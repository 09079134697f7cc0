"""Indexing and selection: ``t[...]``, gather, index_select, masked_fill, where, tril, triu."""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, shape_of, unbroadcast, wrap_dim


def normalize_index(index: Any, t: Tensor) -> Any:
    """Turn tensors (and lists) inside an index into device arrays; keep ints, slices, None, Ellipsis."""
    xp = t._backend.xp

    def conv(i: Any) -> Any:
        if isinstance(i, Tensor):
            if i._device is not t._device:
                raise RuntimeError(f"index: index tensor on {i._device} used with a tensor on {t._device}")
            if i.dtype.kind not in "biu":
                raise IndexError(f"index: tensors used as indices must be integer or bool, got {i.dtype}")
            return i.data
        if isinstance(i, list):
            arr = xp.asarray(i)
            if arr.dtype.kind not in "biu" and arr.size:
                raise IndexError(f"index: lists used as indices must hold ints or bools, got {arr.dtype}")
            return arr.astype("int64") if arr.size == 0 else arr
        return i

    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


class GetItem(Function):
    uses_inputs = False
    is_view = True

    def forward(self, a: Any, index: Any) -> Any:
        self.args = (a.shape, a.dtype, index)
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"index: {e} (tensor shape {a.shape})") from None

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        shape, dtype, index = self.args
        ga = xp.zeros(shape, dtype=g.dtype)
        if _is_basic(index):
            ga[index] = g
        else:
            xp.add.at(ga, index, g)  # repeated indices accumulate
        return ga, None


class Gather(Function):
    uses_inputs = False

    def forward(self, a: Any, index: Any, dim: int) -> Any:
        xp = self.backend.xp
        if index.ndim != a.ndim:
            raise RuntimeError(f"gather: index has {index.ndim} dims but input has {a.ndim}")
        for d in range(a.ndim):
            if d != dim and index.shape[d] > a.shape[d]:
                raise RuntimeError(f"gather: index shape {index.shape} exceeds input shape {a.shape} at dim {d}")
        if index.size and (index.min() < -a.shape[dim] or index.max() >= a.shape[dim]):
            raise IndexError(f"gather: index out of range for dim {dim} of size {a.shape[dim]}")
        src = a[tuple(slice(None) if d == dim else slice(0, index.shape[d]) for d in range(a.ndim))]
        self.args = (a.shape, index, dim)
        return xp.take_along_axis(src, index, axis=dim)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        shape, index, dim = self.args
        ga = xp.zeros(shape, dtype=g.dtype)
        grids = list(xp.indices(index.shape, sparse=True))
        grids[dim] = index
        xp.add.at(ga, tuple(grids), g)
        return ga, None


class IndexSelect(Function):
    uses_inputs = False

    def forward(self, a: Any, index: Any, dim: int) -> Any:
        if index.size and (index.min() < -a.shape[dim] or index.max() >= a.shape[dim]):
            raise IndexError(f"index_select: index out of range for dim {dim} of size {a.shape[dim]} "
                             f"(min {index.min()}, max {index.max()})")
        self.args = (a.shape, index, dim)
        return self.backend.xp.take(a, index, axis=dim)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        shape, index, dim = self.args
        ga = xp.zeros(shape, dtype=g.dtype)
        xp.add.at(xp.moveaxis(ga, dim, 0), index, xp.moveaxis(g, dim, 0))
        return ga, None


class MaskedFill(Function):
    uses_inputs = False

    def forward(self, a: Any, mask: Any, value: Any) -> Any:
        try:
            out = self.backend.xp.where(mask, a.dtype.type(value), a)
        except ValueError:
            raise RuntimeError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {a.shape}") from None
        if out.shape != a.shape:
            raise RuntimeError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {a.shape}")
        self.mask = mask
        return out

    def backward(self, g: Any) -> tuple:
        return self.backend.xp.where(self.mask, 0, g), None, None


class Where(Function):
    uses_inputs = False

    def forward(self, cond: Any, x: Any, y: Any) -> Any:
        xp = self.backend.xp
        try:
            out = xp.where(cond, x, y)
        except ValueError:
            raise RuntimeError(f"where: shapes {shape_of(cond)}, {shape_of(x)} and {shape_of(y)} cannot be "
                               f"broadcast together") from None
        self.args = (cond, shape_of(x), shape_of(y))
        return out

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        cond, sx, sy = self.args
        _, need_x, need_y = self.needs_input_grad
        zero = g.dtype.type(0)
        return (None,
                unbroadcast(xp.where(cond, g, zero), sx) if need_x else None,
                unbroadcast(xp.where(cond, zero, g), sy) if need_y else None)


class Triangle(Function):
    uses_inputs = False

    def forward(self, a: Any, diagonal: int, upper: bool) -> Any:
        if a.ndim < 2:
            raise RuntimeError(f"{'triu' if upper else 'tril'}: input must have at least 2 dims, got {a.shape}")
        self.args = (diagonal, upper)
        xp = self.backend.xp
        return xp.triu(a, diagonal) if upper else xp.tril(a, diagonal)

    def backward(self, g: Any) -> tuple:
        diagonal, upper = self.args
        xp = self.backend.xp
        return (xp.triu(g, diagonal) if upper else xp.tril(g, diagonal)), None, None


# -- functions -----------------------------------------------------------------------------------------
def getitem(a: Tensor, index: Any) -> Tensor:
    return GetItem.apply(a, normalize_index(index, a))


def _index_array(index: Any, like: Tensor, op: str) -> Any:
    if isinstance(index, Tensor):
        if index._device is not like._device:
            raise RuntimeError(f"{op}: index on {index._device} used with an input on {like._device}")
        arr = index.data
    else:
        arr = like._backend.asarray(index)
    if arr.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: index must be an integer tensor, got {arr.dtype}")
    return arr


def gather(a: Tensor, dim: int, index: Any) -> Tensor:
    return Gather.apply(a, _index_array(index, a, "gather"), wrap_dim(dim, a.ndim, "gather"))


def index_select(a: Tensor, dim: int, index: Any) -> Tensor:
    idx = _index_array(index, a, "index_select")
    if idx.ndim > 1:
        raise RuntimeError(f"index_select: index must be 1-D, got shape {idx.shape}")
    return IndexSelect.apply(a, idx.reshape(-1), wrap_dim(dim, a.ndim, "index_select"))


def masked_fill(a: Tensor, mask: Any, value: Any) -> Tensor:
    m = mask.data if isinstance(mask, Tensor) else a._backend.asarray(mask)
    if m.dtype.kind != "b":
        raise RuntimeError(f"masked_fill: mask must be a bool tensor, got {m.dtype}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"masked_fill: value must be a 0-d tensor or a number, got shape {value.shape}")
        value = value.item()
    return MaskedFill.apply(a, m, value)


def where(condition: Any, x: Any = None, y: Any = None) -> Tensor:
    if x is None and y is None:
        raise NotImplementedError("where(condition) with one argument is nonzero(as_tuple=True); not supported")
    cond = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        raise TypeError("where: at least one of x and y must be a tensor")
    x, y = promote(x, y)
    c = cond if hasattr(cond, "dtype") else (x if isinstance(x, Tensor) else y)._backend.asarray(cond)
    if c.dtype.kind != "b":
        raise RuntimeError(f"where: condition must be a bool tensor, got {c.dtype}")
    return Where.apply(c, x, y)


def tril(a: Tensor, diagonal: int = 0) -> Tensor:
    return Triangle.apply(a, diagonal, False)


def triu(a: Tensor, diagonal: int = 0) -> Tensor:
    return Triangle.apply(a, diagonal, True)
