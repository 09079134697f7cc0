"""Shape and view ops: reshape, view, transpose, permute, expand, squeeze, unsqueeze, flatten, unflatten,
repeat, contiguous, clone. Views share their base's version counter."""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import wrap_dim


def _sizes(shape: Any) -> tuple:
    """Accept reshape(2, 3), reshape((2, 3)) and reshape([2, 3])."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _infer(shape: tuple, numel: int, op: str, src: tuple) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred (-1), got {shape}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"{op}: shape {shape} is invalid for input of shape {src} ({numel} elements)")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"{op}: shape {shape} is invalid for input of shape {src} ({numel} elements)")
    return shape


class Reshape(Function):
    uses_inputs = False
    is_view = True

    def forward(self, a: Any, shape: tuple) -> Any:
        self.in_shape = a.shape
        return a.reshape(shape)

    def backward(self, g: Any) -> Any:
        return g.reshape(self.in_shape)


class View(Reshape):
    """Like reshape but never copies: raises when the strides do not allow a view (as torch does)."""

    def forward(self, a: Any, shape: tuple) -> Any:
        self.in_shape = a.shape
        out = a.view()
        try:
            out.shape = shape
        except AttributeError:
            raise RuntimeError(f"view: shape {shape} is not compatible with the input's size and strides "
                               f"(shape {a.shape}, not contiguous); use .reshape(...) instead") from None
        return out


class Permute(Function):
    uses_inputs = False
    is_view = True

    def forward(self, a: Any, dims: tuple) -> Any:
        self.dims = dims
        return a.transpose(dims)

    def backward(self, g: Any) -> Any:
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return g.transpose(inverse)


class Expand(Function):
    uses_inputs = False
    is_view = True

    def forward(self, a: Any, shape: tuple) -> Any:
        self.in_shape = a.shape
        return self.backend.xp.broadcast_to(a, shape)

    def backward(self, g: Any) -> Any:
        from ._util import unbroadcast
        return unbroadcast(g, self.in_shape)


class Repeat(Function):
    uses_inputs = False

    def forward(self, a: Any, reps: tuple) -> Any:
        self.args = (a.shape, reps)
        return self.backend.xp.tile(a, reps)

    def backward(self, g: Any) -> Any:
        shape, reps = self.args
        shape = (1,) * (len(reps) - len(shape)) + tuple(shape)
        split = []
        for r, s in zip(reps, shape):
            split += [r, s]
        g = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(self.args[0])


class Copy(Function):
    """contiguous()/clone(): a fresh C-ordered copy."""

    uses_inputs = False

    def forward(self, a: Any) -> Any:
        return self.backend.xp.array(a, copy=True, order="C")

    def backward(self, g: Any) -> Any:
        return g


# -- functions -----------------------------------------------------------------------------------------
def reshape(a: Tensor, *shape: Any) -> Tensor:
    shape = _infer(_sizes(shape), a.data.size, "reshape", a.shape)
    return a if shape == a.shape else Reshape.apply(a, shape)


def view(a: Tensor, *shape: Any) -> Tensor:
    shape = _infer(_sizes(shape), a.data.size, "view", a.shape)
    return View.apply(a, shape)


def permute(a: Tensor, *dims: Any) -> Tensor:
    dims = _sizes(dims)
    if len(dims) != a.ndim:
        raise RuntimeError(f"permute: number of dims {len(dims)} does not match the tensor's {a.ndim} dims")
    dims = tuple(wrap_dim(d, a.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(a.ndim)):
        raise RuntimeError(f"permute: dims {dims} repeat a dimension")
    return Permute.apply(a, dims)


def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    if a.ndim < 2 and (dim0, dim1) in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        return Reshape.apply(a, a.shape)
    d0, d1 = wrap_dim(dim0, a.ndim, "transpose"), wrap_dim(dim1, a.ndim, "transpose")
    dims = list(range(a.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(a, tuple(dims))


def t(a: Tensor) -> Tensor:
    if a.ndim > 2:
        raise RuntimeError(f"t(): expects a tensor with <= 2 dims, got {a.ndim}; use transpose or mT")
    return transpose(a, 0, -1) if a.ndim == 2 else a


def T(a: Tensor) -> Tensor:  # noqa: N802 - torch name
    return Permute.apply(a, tuple(reversed(range(a.ndim))))


def mT(a: Tensor) -> Tensor:  # noqa: N802 - torch name
    if a.ndim < 2:
        raise RuntimeError(f"mT: tensor must have at least 2 dims, got {a.ndim}")
    return transpose(a, -2, -1)


def expand(a: Tensor, *sizes: Any) -> Tensor:
    sizes = _sizes(sizes)
    if len(sizes) < a.ndim:
        raise RuntimeError(f"expand: the number of sizes {len(sizes)} must be >= the tensor's dims {a.ndim}")
    lead = len(sizes) - a.ndim
    shape = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise RuntimeError("expand: -1 is not allowed in a new leading dimension")
            s = a.shape[i - lead]
        elif i >= lead and a.shape[i - lead] not in (1, s):
            raise RuntimeError(f"expand: the size {a.shape[i - lead]} at dim {i - lead} must match {s} or be 1 "
                               f"(input shape {a.shape}, target {sizes})")
        shape.append(s)
    return Expand.apply(a, tuple(shape))


def expand_as(a: Tensor, other: Tensor) -> Tensor:
    return expand(a, *other.shape)


def broadcast_to(a: Tensor, shape: Any) -> Tensor:
    return expand(a, *shape)


def repeat(a: Tensor, *reps: Any) -> Tensor:
    reps = _sizes(reps)
    if len(reps) < a.ndim:
        raise RuntimeError(f"repeat: number of repeats {len(reps)} must be >= the tensor's dims {a.ndim}")
    return Repeat.apply(a, reps)


def squeeze(a: Tensor, dim: Any = None) -> Tensor:
    if dim is None:
        shape = tuple(s for s in a.shape if s != 1)
    else:
        dims = {wrap_dim(d, a.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)} if a.ndim else set()
        shape = tuple(s for i, s in enumerate(a.shape) if not (i in dims and s == 1))
    return Reshape.apply(a, shape)


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    d = wrap_dim(dim, a.ndim + 1, "unsqueeze")
    shape = a.shape[:d] + (1,) + a.shape[d:]
    return Reshape.apply(a, shape)


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if a.ndim == 0:
        return Reshape.apply(a, (1,))
    s, e = wrap_dim(start_dim, a.ndim, "flatten"), wrap_dim(end_dim, a.ndim, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = a.shape[:s] + (math.prod(a.shape[s:e + 1]),) + a.shape[e + 1:]
    return Reshape.apply(a, shape)


def unflatten(a: Tensor, dim: int, sizes: Any) -> Tensor:
    d = wrap_dim(dim, a.ndim, "unflatten")
    sizes = _infer(tuple(sizes), a.shape[d], "unflatten", a.shape)
    return Reshape.apply(a, a.shape[:d] + sizes + a.shape[d + 1:])


def contiguous(a: Tensor) -> Tensor:
    return a if a.data.flags.c_contiguous else Copy.apply(a)


def clone(a: Tensor) -> Tensor:
    return Copy.apply(a)
