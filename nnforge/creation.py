"""Tensor creation: tensor, from_numpy, zeros, ones, full, empty, arange, linspace, eye, rand, randn,
randint, randperm and the *_like variants. Floats default to float32."""
from __future__ import annotations

from typing import Any

from . import dtypes as _dt
from .backend import device as _device
from .random import Generator, _rng
from .tensor import Tensor


def _shape(size: Any) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _finish(arr: Any, dev: Any, requires_grad: bool) -> Tensor:
    t = Tensor._make(dev.backend.from_numpy(arr) if dev.type != "cpu" else arr, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float_dtype(dtype: Any) -> Any:
    return _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (lists, scalars, NumPy arrays or tensors)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or data.dtype == _dt.to_dtype(dtype)) and device is None:
        return data
    return Tensor(data, dtype=dtype, device=device)


def from_numpy(a: Any) -> Tensor:
    """A tensor sharing memory with the NumPy array ``a`` (dtype preserved)."""
    return Tensor._make(a, _device("cpu"))


def _host(dev: Any) -> Any:
    return _device(dev or "cpu")


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    return _finish(dev.backend.xp.zeros(_shape(size), dtype=_float_dtype(dtype)), dev, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    return _finish(dev.backend.xp.ones(_shape(size), dtype=_float_dtype(dtype)), dev, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    return _finish(dev.backend.xp.empty(_shape(size), dtype=_float_dtype(dtype)), dev, requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    if dtype is None:
        dtype = _dt.bool_ if isinstance(fill_value, bool) else _dt.int64 if isinstance(fill_value, int) else None
    return _finish(dev.backend.xp.full(_shape((size,)), fill_value, dtype=_float_dtype(dtype)), dev, requires_grad)


def _like(t: Tensor, dtype: Any, device: Any) -> tuple:
    return (t.dtype if dtype is None else _dt.to_dtype(dtype)), (t.device if device is None else device)


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return zeros(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return ones(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return empty(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = _dt.int64 if ints else _dt.get_default_dtype()
    dev = _host(device)
    return _finish(dev.backend.xp.arange(start, end, step, dtype=_dt.to_dtype(dtype)), dev, requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    arr = dev.backend.xp.linspace(start, end, steps, dtype="float64").astype(_float_dtype(dtype))
    return _finish(arr, dev, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _host(device)
    return _finish(dev.backend.xp.eye(n, m, dtype=_float_dtype(dtype)), dev, requires_grad)


def _random(draw: Any, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    dev = _host(device)
    return _finish(draw.astype(_float_dtype(dtype), copy=False), dev, requires_grad)


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1)."""
    return _random(_rng(generator).random(_shape(size), dtype="float64"), dtype, device, requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal."""
    return _random(_rng(generator).standard_normal(_shape(size)), dtype, device, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, generator: Generator | None = None,
            dtype: Any = None, device: Any = None) -> Tensor:
    """Integers in [low, high); ``randint(high, size)`` also works, like torch."""
    if size is None:
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint(low=0, high, size) needs high and size")
    arr = _rng(generator).integers(low, high, size=tuple(size), dtype="int64")
    dev = _host(device)
    return _finish(arr.astype(_dt.to_dtype(dtype or _dt.int64), copy=False), dev, False)


def randperm(n: int, generator: Generator | None = None, dtype: Any = None, device: Any = None) -> Tensor:
    arr = _rng(generator).permutation(n).astype(_dt.to_dtype(dtype or _dt.int64))
    return _finish(arr, _host(device), False)


def rand_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return rand(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def randn_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return randn(t.shape, dtype=dt, device=dev, requires_grad=requires_grad)
