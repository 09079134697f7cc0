"""``Tensor``: an array on a device plus what autograd needs (``requires_grad``, ``grad``, ``grad_fn``).

Ops live in ``nnforge/ops`` (one family per file) and are attached as methods in ``nnforge/_methods.py``;
this file holds the data model, conversions, in-place updates and printing.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterator

from . import dtypes as _dt
from .autograd.grad_mode import GRAD_ENABLED
from .backend import CPU, Device, device as _device


class Tensor:
    """A multi-dimensional array with reverse-mode autograd, following ``torch.Tensor``."""

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_device", "_version", "_hooks", "__weakref__")
    __array_ufunc__ = None  # make NumPy hand `ndarray op Tensor` to our reflected operators
    __hash__ = object.__hash__  # == is elementwise, hashing stays by identity (dict keys, sets)

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> None:
        dev = _device(device) if device is not None else (data._device if isinstance(data, Tensor) else CPU)
        self.data = _to_array(data, dtype, dev)
        self._device = dev
        self.grad = None
        self.grad_fn = None
        self._version = [0]
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(data: Any, dev: Device, cls: type | None = None) -> "Tensor":
        """Wrap an array produced by an op (no copy, no checks): the hot path of every op."""
        t = object.__new__(cls or Tensor)
        t.data = data
        t._device = dev
        t.requires_grad = False
        t.grad = None
        t.grad_fn = None
        t._version = [0]
        t._hooks = None
        return t

    # -- metadata ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> Device:
        return self._device

    @property
    def _backend(self):
        return self._device.backend

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def size(self, dim: int | None = None):
        if dim is None:
            return self.data.shape
        from .ops._util import wrap_dim
        return self.data.shape[wrap_dim(dim, self.data.ndim, "size")]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.itemsize

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # -- conversions -------------------------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (shares memory on the CPU). Raises for tensors that require grad,
        like torch; call ``.detach().numpy()``."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return self._backend.to_numpy(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None):
        a = self._backend.to_numpy(self.data)
        return a if dtype is None else a.astype(dtype, copy=False)

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(f"item(): a tensor with {self.data.size} elements cannot be converted to a Python scalar")
        return self._backend.to_numpy(self.data).reshape(()).item()

    def tolist(self):
        return self._backend.to_numpy(self.data).tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.item())

    def to(self, *args: Any, **kwargs: Any) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``; returns self when
        nothing changes. Differentiable."""
        from .ops.cast import cast, to_device

        dev = dt = None
        for a in list(args) + [kwargs.get("device"), kwargs.get("dtype")]:
            if a is None:
                continue
            if isinstance(a, Tensor):
                dev, dt = a._device, a.dtype
            elif isinstance(a, Device) or isinstance(a, str) and _is_device_name(a):
                dev = _device(a)
            else:
                dt = _dt.to_dtype(a)
        out = self
        if dt is not None and dt != out.dtype:
            out = cast(out, dt)
        if dev is not None and dev != out._device:
            out = to_device(out, _device(dev))
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def float(self) -> "Tensor":
        return self.to(_dt.float32)

    def double(self) -> "Tensor":
        return self.to(_dt.float64)

    def half(self) -> "Tensor":
        return self.to(_dt.float16)

    def long(self) -> "Tensor":
        return self.to(_dt.int64)

    def int(self) -> "Tensor":
        return self.to(_dt.int32)

    def bool(self) -> "Tensor":
        return self.to(_dt.bool_)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    # -- autograd ----------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self.grad_fn is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach() to cut it from the graph")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """A tensor sharing data (and version counter) with this one, outside the graph."""
        t = Tensor._make(self.data, self._device)
        t._version = self._version
        return t

    def __deepcopy__(self, memo: dict) -> "Tensor":
        """A leaf copy with its own data, same type (Parameter stays Parameter) and requires_grad, as
        ``copy.deepcopy`` of a module needs (torch allows it on leaves only)."""
        if self.grad_fn is not None:
            raise RuntimeError("deepcopy: only leaf tensors (created by the user, e.g. parameters) support the "
                               "deepcopy protocol; use tensor.detach().clone()")
        t = object.__new__(type(self))
        memo[id(self)] = t
        t.data = self.data.copy()
        t._device = self._device
        t.requires_grad = self.requires_grad
        t.grad = None if self.grad is None else self.grad.__deepcopy__(memo)
        t.grad_fn = None
        t._version = [0]
        t._hooks = None
        return t

    def detach_(self) -> "Tensor":
        self.grad_fn = None
        self.requires_grad = False
        return self

    def clone(self) -> "Tensor":
        from .ops.shape import clone
        return clone(self)

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * gradient into every leaf's ``.grad``."""
        from .autograd.engine import run_backward

        if not self.requires_grad:
            raise RuntimeError("backward(): tensor does not require grad and has no grad_fn "
                               "(did you compute it under no_grad or from tensors without requires_grad?)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be created implicitly only for scalar outputs; this "
                                   f"tensor has shape {tuple(self.shape)}, pass gradient= of that shape")
            g = self._backend.xp.ones_like(self.data)
        else:
            # not copied (torch copies none either): the engine copies the caller's array before a leaf keeps it
            # as its .grad, and backward functions never write into their gradient (tests/helpers.check_op)
            g = self._backend.asarray(gradient.data if isinstance(gradient, Tensor) else gradient, self.dtype)
            if g.shape != self.shape:
                raise RuntimeError(f"backward(): gradient has shape {tuple(g.shape)} but the tensor has shape "
                                   f"{tuple(self.shape)}")
        run_backward([self], [g], retain_graph)

    def register_hook(self, hook) -> "_RemovableHook":
        """``hook(grad) -> grad | None`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that doesn't require grad")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if not isinstance(self.grad_fn.pre_hooks, list):
                self.grad_fn.pre_hooks = []
            hooks = self.grad_fn.pre_hooks
        hooks.append(hook)
        return _RemovableHook(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for a non-leaf tensor after backward."""
        if self.grad_fn is None:
            return
        ref = weakref.ref(self)

        def store(g: "Tensor") -> None:
            owner = ref()
            if owner is not None:
                owner.grad = g if owner.grad is None else Tensor._make(owner.grad.data + g.data, g._device)

        self.register_hook(store)

    # -- in-place updates (on tensors that do not require grad, e.g. parameters under no_grad) --------
    def _inplace(self, op: str) -> None:
        if self.requires_grad and GRAD_ENABLED[0]:
            if self.grad_fn is None:
                raise RuntimeError(f"{op}: a leaf tensor that requires grad is used in an in-place operation; "
                                   f"wrap the update in `with nf.no_grad():`")
            raise RuntimeError(f"{op}: in-place operations on tensors that are part of the autograd graph are not "
                               f"supported; use the out-of-place op (e.g. x = x + y)")
        self._version[0] += 1

    def _operand(self, other: Any, op: str):
        if isinstance(other, Tensor):
            if other._device is not self._device:
                raise RuntimeError(f"{op}: expected all tensors on the same device, found {self._device} and "
                                   f"{other._device}")
            return other.data
        return other

    def add_(self, other: Any, alpha: Any = 1) -> "Tensor":
        self._inplace("add_")
        o = self._operand(other, "add_")
        xp = self._backend.xp
        xp.add(self.data, o if alpha == 1 else o * alpha, out=self.data)
        return self

    def sub_(self, other: Any, alpha: Any = 1) -> "Tensor":
        self._inplace("sub_")
        o = self._operand(other, "sub_")
        self._backend.xp.subtract(self.data, o if alpha == 1 else o * alpha, out=self.data)
        return self

    def mul_(self, other: Any) -> "Tensor":
        self._inplace("mul_")
        self._backend.xp.multiply(self.data, self._operand(other, "mul_"), out=self.data)
        return self

    def div_(self, other: Any) -> "Tensor":
        self._inplace("div_")
        self._backend.xp.divide(self.data, self._operand(other, "div_"), out=self.data)
        return self

    def zero_(self) -> "Tensor":
        self._inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value: Any) -> "Tensor":
        self._inplace("fill_")
        self.data[...] = value.item() if isinstance(value, Tensor) else value
        return self

    def copy_(self, src: Any) -> "Tensor":
        self._inplace("copy_")
        if isinstance(src, Tensor):
            s = src.data if src._device is self._device else \
                self._backend.from_numpy(src._backend.to_numpy(src.data))
        else:
            s = self._backend.asarray(src)
        try:
            self._backend.xp.copyto(self.data, s, casting="unsafe")
        except ValueError:
            raise RuntimeError(f"copy_: source of shape {tuple(s.shape)} cannot be broadcast to "
                               f"{tuple(self.shape)}") from None
        return self

    def clamp_(self, min: Any = None, max: Any = None) -> "Tensor":
        self._inplace("clamp_")
        self._backend.xp.clip(self.data, min, max, out=self.data)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        from .ops.indexing import normalize_index

        self._inplace("__setitem__")
        self.data[normalize_index(index, self)] = self._operand(value, "__setitem__")

    # augmented assignment: in place when no graph is recorded, out of place (rebinding) otherwise
    def __iadd__(self, other: Any) -> "Tensor":
        return self.add_(other) if not self._graph_tracked() else self + other

    def __isub__(self, other: Any) -> "Tensor":
        return self.sub_(other) if not self._graph_tracked() else self - other

    def __imul__(self, other: Any) -> "Tensor":
        return self.mul_(other) if not self._graph_tracked() else self * other

    def __itruediv__(self, other: Any) -> "Tensor":
        return self.div_(other) if not self._graph_tracked() else self / other

    def _graph_tracked(self) -> bool:
        return GRAD_ENABLED[0] and self.requires_grad

    # -- printing ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        xp = self._backend.xp
        body = xp.array2string(self._backend.to_numpy(self.data), separator=", ", precision=4,
                               prefix="tensor(") if self._device.type == "cpu" else \
            repr(self._backend.to_numpy(self.data).tolist())
        extras = []
        if self.data.dtype not in (_dt.float32, _dt.int64, _dt.bool_):
            extras.append(f"dtype=nnforge.{self.data.dtype}")
        if self._device.type != "cpu":
            extras.append(f"device='{self._device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __iter__(self) -> Iterator["Tensor"]:
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __reduce__(self):  # pragma: no cover - explicit: nnforge never pickles tensors
        raise TypeError("nnforge tensors are not pickled; use nf.save(obj, path) (safetensors format)")


class _RemovableHook:
    def __init__(self, hooks: list, hook: Any) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _is_device_name(s: str) -> bool:
    """Device strings ('cpu', 'cuda:0') as opposed to dtype strings ('float32')."""
    from .backend import available_devices
    return s.split(":")[0] in {"cpu", "cuda", "mps", "xpu", "meta", *available_devices()}


def _to_array(data: Any, dtype: Any, dev: Device):
    """Build a device array from Python data, NumPy arrays or tensors, with torch's dtype inference."""
    backend = dev.backend
    dt = _dt.to_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        host = data._backend.to_numpy(data.data)
        return backend.from_numpy(backend.array(host, dt))
    if isinstance(data, backend.ndarray) or hasattr(data, "__array__") and not isinstance(data, (list, tuple)):
        arr = backend.array(backend.asarray(data) if dev.type != "cpu" else data, dt)
    else:
        try:
            arr = backend.array(data, dt)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"tensor(): cannot build a tensor from this {type(data).__name__}: {e}") from None
        if dt is None and arr.dtype == _dt.float64 and not _has_numpy_float64(data):
            arr = arr.astype(_dt.get_default_dtype())  # Python floats become the default float dtype
    if arr.dtype.kind == "O" or arr.dtype.kind == "U":
        raise TypeError(f"tensor(): cannot build a tensor from data of type {type(data).__name__} "
                        f"(ragged lists or non-numeric values?)")
    return arr


def _has_numpy_float64(data: Any) -> bool:
    """True if a nested list holds NumPy float64 scalars (kept as float64, like torch does)."""
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return type(data).__name__ == "float64"
