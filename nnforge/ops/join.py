"""Joining and splitting: cat, stack, split, chunk, unbind."""
from __future__ import annotations

from typing import Any, Sequence

from .. import dtypes as _dt
from ..autograd.function import Function
from ..tensor import Tensor
from ._util import wrap_dim
from .cast import cast
from .indexing import GetItem


class Cat(Function):
    uses_inputs = False

    def forward(self, *arrays: Any, dim: int) -> Any:
        self.args = (dim, [a.shape[dim] for a in arrays])
        try:
            return self.backend.xp.concatenate(arrays, axis=dim)
        except ValueError:
            raise RuntimeError(f"cat: tensors must have the same shape except in dim {dim}, got "
                               f"{[tuple(a.shape) for a in arrays]}") from None

    def backward(self, g: Any) -> tuple:
        dim, sizes = self.args
        out, start = [], 0
        for n, need in zip(sizes, self.needs_input_grad):
            idx = (slice(None),) * dim + (slice(start, start + n),)
            out.append(g[idx] if need else None)
            start += n
        return tuple(out)


class Stack(Function):
    uses_inputs = False

    def forward(self, *arrays: Any, dim: int) -> Any:
        self.dim = dim
        try:
            return self.backend.xp.stack(arrays, axis=dim)
        except ValueError:
            raise RuntimeError(f"stack: tensors must all have the same shape, got "
                               f"{[tuple(a.shape) for a in arrays]}") from None

    def backward(self, g: Any) -> tuple:
        idx = (slice(None),) * self.dim
        return tuple(g[idx + (i,)] if need else None for i, need in enumerate(self.needs_input_grad))


def _same_dtype(tensors: Sequence[Tensor]) -> list:
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = _dt.result_type(dt, 1, t.dtype, 1)
    return [t if t.dtype == dt else cast(t, dt) for t in tensors]


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat: expected a non-empty list of tensors")
    # torch accepts 1-D empty tensors next to any others (legacy behaviour people rely on): they become
    # empty along `dim` in the others' shape, so they still get their (empty) gradient
    legacy = [t.ndim == 1 and t.shape[0] == 0 for t in tensors]
    ref = next((t for t, e in zip(tensors, legacy) if not e), tensors[0])
    ndim = ref.ndim
    if ndim == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    d = wrap_dim(dim, ndim, "cat")
    empty = ref.shape[:d] + (0,) + ref.shape[d + 1:]
    tensors = [t.reshape(empty) if e else t for t, e in zip(tensors, legacy)]
    for t in tensors:
        if t.ndim != ndim:
            raise RuntimeError(f"cat: tensors must have the same number of dims, got shapes "
                               f"{[tuple(x.shape) for x in tensors]}")
    return Cat.apply(*_same_dtype(tensors), dim=d)


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack: expected a non-empty list of tensors")
    return Stack.apply(*_same_dtype(tensors), dim=wrap_dim(dim, tensors[0].ndim + 1, "stack"))


def split(a: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple:
    """Views along ``dim`` of the given size (last one smaller) or of the listed sizes."""
    d = wrap_dim(dim, a.ndim, "split")
    n = a.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {dim} has size {n}")
    out, start = [], 0
    for size in sizes:
        out.append(GetItem.apply(a, (slice(None),) * d + (slice(start, start + size),)))
        start += size
    return tuple(out)


def chunk(a: Tensor, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError(f"chunk: chunks must be positive, got {chunks}")
    n = a.shape[wrap_dim(dim, a.ndim, "chunk")]
    return split(a, max(-(-n // chunks), 1), dim)


def unbind(a: Tensor, dim: int = 0) -> tuple:
    d = wrap_dim(dim, a.ndim, "unbind")
    return tuple(GetItem.apply(a, (slice(None),) * d + (i,)) for i in range(a.shape[d]))
