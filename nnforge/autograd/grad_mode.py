"""Grad mode: whether ops record the graph (``no_grad``/``enable_grad``) and anomaly detection."""
from __future__ import annotations

import functools
from typing import Any, Callable

# One-element lists: ops read ``_STATE[0]`` on their hot path, cheaper than a function call.
GRAD_ENABLED = [True]
ANOMALY = [False]


class _GradModeContext:
    """Base for context managers that also work as decorators, like torch's."""

    mode: bool

    def __enter__(self) -> None:
        self._prev = GRAD_ENABLED[0]
        GRAD_ENABLED[0] = self.mode

    def __exit__(self, *exc: Any) -> None:
        GRAD_ENABLED[0] = self._prev

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradModeContext):
    """Ops inside do not record a graph (results have ``requires_grad=False``)."""

    mode = False


class enable_grad(_GradModeContext):
    """Re-enable graph recording inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradModeContext):
    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)


def is_grad_enabled() -> bool:
    return GRAD_ENABLED[0]


class detect_anomaly:
    """Check every op's forward output and backward gradients for NaN/Inf and raise naming the op.

    Slower (one ``isfinite`` pass per op); use it to find where a NaN comes from.
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan

    def __enter__(self) -> "detect_anomaly":
        self._prev = ANOMALY[0]
        ANOMALY[0] = self.check_nan
        return self

    def __exit__(self, *exc: Any) -> None:
        ANOMALY[0] = self._prev


def is_anomaly_enabled() -> bool:
    return ANOMALY[0]
