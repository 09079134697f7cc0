"""Gradient clipping: clip_grad_norm_ and clip_grad_value_ (torch.nn.utils)."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor


def _grads(parameters: Any) -> list:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Scale all gradients in place so their joint ``norm_type`` norm is at most ``max_norm``.

    Returns the total norm (before clipping) as a 0-d tensor. Gradients are multiplied by
    ``min(1, max_norm / (total + 1e-6))``, as torch does."""
    grads = _grads(parameters)
    if not grads:
        from ...creation import tensor
        return tensor(0.0)
    xp = grads[0]._backend.xp
    norm_type = float(norm_type)
    dt = grads[0].dtype
    if norm_type == math.inf:
        norms = [xp.abs(g.data).max() if g.data.size else xp.zeros((), dtype=dt) for g in grads]
        total = xp.max(xp.stack(norms))
    elif norm_type == 2.0:
        total = xp.sqrt(sum(xp.vdot(g.data.ravel(), g.data.ravel()) for g in grads))
    else:
        total = sum((xp.abs(g.data) ** norm_type).sum() for g in grads) ** (1.0 / norm_type)
    total = xp.asarray(total, dtype=dt)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                           f"({float(total)}); set error_if_nonfinite=False to clip anyway")
    coef = float(max_norm) / (float(total) + 1e-6)
    if coef < 1.0:
        with no_grad():
            for g in grads:
                g.mul_(coef)
    return Tensor._make(total, grads[0].device)


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach: Any = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
