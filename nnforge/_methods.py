"""Attach the ops as Tensor methods and operators (one table, so the method list is easy to read)."""
from __future__ import annotations

from typing import Any

from .ops import arithmetic as A, comparison as C, indexing as I, join as J, math as M, reduction as R, shape as S
from .ops import elision as _elision
from .tensor import Tensor


def _rev(fn: Any) -> Any:
    return lambda self, other: fn(other, self)


_METHODS = {
    # arithmetic and operators
    "add": A.add, "sub": A.sub, "subtract": A.sub, "mul": A.mul, "multiply": A.mul, "div": A.div,
    "divide": A.div, "true_divide": A.div, "neg": A.neg, "negative": A.neg, "pow": A.pow, "matmul": A.matmul,
    "remainder": A.remainder, "floor_divide": A.floor_divide,
    "__add__": A.add, "__radd__": _rev(A.add), "__sub__": A.sub, "__rsub__": _rev(A.sub),
    "__mul__": A.mul, "__rmul__": _rev(A.mul), "__truediv__": A.div, "__rtruediv__": _rev(A.div),
    "__floordiv__": A.floor_divide, "__rfloordiv__": _rev(A.floor_divide),
    "__mod__": A.remainder, "__rmod__": _rev(A.remainder), "__pow__": A.pow, "__rpow__": _rev(A.pow),
    "__matmul__": A.matmul, "__rmatmul__": _rev(A.matmul), "__neg__": A.neg, "__pos__": lambda self: self,
    # math
    "exp": M.exp, "log": M.log, "log1p": M.log1p, "sqrt": M.sqrt, "rsqrt": M.rsqrt, "abs": M.abs,
    "__abs__": M.abs, "sign": M.sign, "sin": M.sin, "cos": M.cos, "tanh": M.tanh, "sigmoid": M.sigmoid,
    "relu": M.relu, "erf": M.erf, "clamp": M.clamp, "clip": M.clamp, "maximum": M.maximum,
    "minimum": M.minimum, "floor": M.floor, "ceil": M.ceil, "round": M.round, "trunc": M.trunc,
    # comparisons (no grad)
    "__eq__": C.eq, "__ne__": C.ne, "__lt__": C.lt, "__le__": C.le, "__gt__": C.gt, "__ge__": C.ge,
    "eq": C.eq, "ne": C.ne, "lt": C.lt, "le": C.le, "gt": C.gt, "ge": C.ge,
    "__and__": C.logical_and, "__or__": C.logical_or, "__xor__": C.logical_xor, "__invert__": C.logical_not,
    "logical_and": C.logical_and, "logical_or": C.logical_or, "logical_not": C.logical_not,
    "isnan": C.isnan, "isinf": C.isinf, "isfinite": C.isfinite, "allclose": C.allclose, "equal": C.equal,
    "any": C.any, "all": C.all,
    # reductions
    "sum": R.sum, "mean": R.mean, "var": R.var, "std": R.std, "max": R.max, "min": R.min, "amax": R.amax,
    "amin": R.amin, "argmax": R.argmax, "argmin": R.argmin, "prod": R.prod, "logsumexp": R.logsumexp,
    "cumsum": R.cumsum, "norm": R.norm,
    # shape
    "reshape": S.reshape, "view": S.view, "permute": S.permute, "transpose": S.transpose, "t": S.t,
    "expand": S.expand, "expand_as": S.expand_as, "broadcast_to": S.broadcast_to, "repeat": S.repeat,
    "squeeze": S.squeeze, "unsqueeze": S.unsqueeze, "flatten": S.flatten, "unflatten": S.unflatten,
    "contiguous": S.contiguous,
    "split": J.split, "chunk": J.chunk, "unbind": J.unbind,
    # indexing
    "__getitem__": I.getitem, "gather": I.gather, "index_select": I.index_select, "masked_fill": I.masked_fill,
    "tril": I.tril, "triu": I.triu,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

from .ops import activation as _act  # noqa: E402

Tensor.softmax = _act.softmax
Tensor.log_softmax = _act.log_softmax
Tensor.T = property(S.T)
Tensor.mT = property(S.mT)
Tensor.where = lambda self, condition, other: I.where(condition, self, other)
Tensor.view_as = lambda self, other: S.view(self, other.shape)
Tensor.reshape_as = lambda self, other: S.reshape(self, other.shape)

# measured once the operators exist: what a temporary operand looks like on their path (ops/elision.py)
_elision.calibrate({"add": (lambda make: make() + 1.0, lambda x: x + 1.0),
                    "sub": (lambda make: make() - 1.0, lambda x: x - 1.0),
                    "mul": (lambda make: make() * 1.0, lambda x: x * 1.0)})
