"""The C inner loops of NumPy's binary ufuncs, for a thread that runs them without the GIL (``numba_tasks``).

A ufunc keeps one compiled inner loop per type signature (the best SIMD variant for this CPU, chosen when
NumPy loads) in its ``functions`` table, part of NumPy's public C API (``PyUFuncObject`` in
``ufuncobject.h``). A pool worker that calls that loop on its share of an add or a multiply computes exactly
what the ufunc would, at its speed (a numba loop over 2M float32 elements measured ~10% slower than NumPy's),
without ever entering Python. The table is read through the struct's documented layout and checked against
what the ufunc reports through Python (name, arity, type signatures); on any mismatch, or off CPython, there
is no loop and the op runs through Python as before.
"""
from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

import numpy as np


class _UFuncHead(ctypes.Structure):
    """The leading fields of ``PyUFuncObject`` (numpy/ufuncobject.h), up to the type signatures."""
    _fields_ = [("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),
                ("nin", ctypes.c_int), ("nout", ctypes.c_int), ("nargs", ctypes.c_int), ("identity", ctypes.c_int),
                ("functions", ctypes.POINTER(ctypes.c_void_p)), ("data", ctypes.POINTER(ctypes.c_void_p)),
                ("ntypes", ctypes.c_int), ("reserved1", ctypes.c_int),
                ("name", ctypes.c_char_p), ("types", ctypes.POINTER(ctypes.c_byte))]


@functools.cache
def binary_loop(ufunc: Any, dtype: Any) -> tuple[int, int] | None:
    """(address of the inner loop, its data pointer) of a binary ufunc for ``dtype`` operands and result,
    e.g. ``ff->f``; None when the ufunc has no such loop or its table does not read back as checked."""
    if sys.implementation.name != "cpython" or not isinstance(ufunc, np.ufunc) or ufunc.nin != 2 or ufunc.nout != 1:
        return None
    char = np.dtype(dtype).char
    try:
        index = ufunc.types.index(f"{char}{char}->{char}")
        head = _UFuncHead.from_address(id(ufunc))  # CPython: an object's id is its address
        if (head.name != ufunc.__name__.encode() or (head.nin, head.nout, head.nargs) != (2, 1, 3)
                or head.ntypes != len(ufunc.types)):
            return None
        numbers = [np.dtype(c).num for signature in ufunc.types for c in signature.replace("->", "")]
        if [head.types[i] for i in range(3 * head.ntypes)] != numbers or not head.functions[index]:
            return None
        return head.functions[index], head.data[index] or 0
    except (ValueError, TypeError):
        return None
