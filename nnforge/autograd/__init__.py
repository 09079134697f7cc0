"""Reverse-mode automatic differentiation: ``Function``, ``grad``, ``gradcheck``, grad mode, anomaly mode."""
from __future__ import annotations

from typing import Any, Sequence

from .function import Function
from .gradcheck import GradcheckError, gradcheck
from .grad_mode import detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, set_grad_enabled


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """Gradients of ``outputs`` w.r.t. ``inputs``, returned (not accumulated into ``.grad``).

    ``create_graph=True`` (higher-order gradients) is not supported: backward functions work on arrays.
    """
    from ..tensor import Tensor
    from .engine import run_backward

    if create_graph:
        raise NotImplementedError("autograd.grad: create_graph=True (higher-order gradients) is not supported")
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("autograd.grad: one of the inputs does not require grad")
    arrays = []
    for out, g in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError("autograd.grad: one of the outputs does not require grad and has no grad_fn")
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(f"autograd.grad: grad can be created implicitly only for scalar outputs, "
                                   f"got shape {tuple(out.shape)}")
            arrays.append(out._backend.xp.ones_like(out.data))
        else:
            arrays.append(g.data if isinstance(g, Tensor) else out._backend.asarray(g, out.dtype))
    found = run_backward(outputs, arrays, bool(retain_graph), capture=inputs)
    result = []
    for t, g in zip(inputs, found):
        if g is None and not allow_unused:
            raise RuntimeError("autograd.grad: one of the inputs was not used in the graph; "
                               "pass allow_unused=True to get None for it")
        result.append(None if g is None else Tensor._make(t._backend.asarray(g), t._device))
    return tuple(result)


__all__ = ["Function", "grad", "gradcheck", "GradcheckError", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "detect_anomaly", "is_anomaly_enabled"]
