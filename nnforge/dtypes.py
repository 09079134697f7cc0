"""nnforge dtypes and torch's type-promotion rules.

dtypes are NumPy dtype objects: NumPy and CuPy share them, so they say nothing about the device.
"""
from __future__ import annotations

import numpy as np

float32 = np.dtype("float32")
float64 = np.dtype("float64")
float16 = np.dtype("float16")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
int16 = np.dtype("int16")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")
float = float32  # noqa: A001 - torch names: nf.float, nf.double, nf.long, nf.half, nf.int
double = float64
long = int64
half = float16
int = int32  # noqa: A001

_DEFAULT_FLOAT = float32

_NAMES = {"float32": float32, "float": float32, "float64": float64, "double": float64, "float16": float16,
          "half": float16, "int64": int64, "long": int64, "int32": int32, "int": int32, "int16": int16,
          "int8": int8, "uint8": uint8, "bool": bool_}


def get_default_dtype() -> np.dtype:
    return _DEFAULT_FLOAT


def to_dtype(dtype) -> np.dtype:
    """Accept nf dtypes, NumPy dtypes/types, strings ('float32', 'long'), Python types and torch dtypes."""
    if isinstance(dtype, np.dtype):
        return dtype
    if dtype is builtins_float:
        return _DEFAULT_FLOAT
    if dtype is builtins_int:
        return int64
    if dtype is builtins_bool:
        return bool_
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").removeprefix("nnforge.")
        if name in _NAMES:
            return _NAMES[name]
    elif type(dtype).__module__ == "torch":  # torch.float32 etc., so that habits carry over
        return to_dtype(str(dtype))
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None


def is_floating(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def _category(dtype: np.dtype) -> int:
    return 0 if dtype.kind == "b" else (2 if dtype.kind in "fc" else 1)


def result_type(a_dtype: np.dtype, a_ndim: int, b_dtype: np.dtype, b_ndim: int) -> np.dtype:
    """torch.result_type for two tensors: a higher category (bool < int < float) wins; within the same
    category a dimensioned tensor beats a 0-d one; otherwise the wider type."""
    if a_dtype == b_dtype:
        return a_dtype
    ca, cb = _category(a_dtype), _category(b_dtype)
    if ca != cb:
        return a_dtype if ca > cb else b_dtype
    if (a_ndim == 0) != (b_ndim == 0):
        return b_dtype if a_ndim == 0 else a_dtype
    return np.promote_types(a_dtype, b_dtype)


def scalar_result_type(t_dtype: np.dtype, scalar) -> np.dtype:
    """dtype of ``tensor op python_scalar``: a scalar never widens a tensor of its own category."""
    if isinstance(scalar, builtins_bool):
        return t_dtype
    if isinstance(scalar, builtins_float) and t_dtype.kind in "biu":
        return _DEFAULT_FLOAT
    if isinstance(scalar, builtins_int) and t_dtype.kind == "b":
        return int64
    return t_dtype


import builtins as _builtins  # noqa: E402  (the names float/int above shadow the builtins)

builtins_float = _builtins.float
builtins_int = _builtins.int
builtins_bool = _builtins.bool
