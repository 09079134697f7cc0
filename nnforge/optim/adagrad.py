"""Adagrad (torch.optim.Adagrad): per-element learning rates from the sum of squared gradients."""
from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, grad_for_update


class Adagrad(Optimizer):
    """Adagrad; matches ``torch.optim.Adagrad`` step for step.

    ``sum += g * g``; ``p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)``, ``sum`` starting at
    ``initial_accumulator_value``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False) -> None:
        for what, value in (("learning rate", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
                            ("initial_accumulator_value", initial_accumulator_value), ("eps", eps)):
            if value < 0.0:
                raise ValueError(f"Adagrad: invalid {what} {value} (expected >= 0)")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def init_state(self, p, group: dict) -> dict:
        xp = p._backend.xp
        return {"step": 0, "sum": xp.full_like(p.data, group["initial_accumulator_value"])}

    def update(self, p, g, state: dict, group: dict) -> None:
        xp = p._backend.xp
        state["step"] += 1
        eps, wd, maximize = group["eps"], group["weight_decay"], group["maximize"]
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])

        def kernel(x, g, acc, t1, t2):
            g = grad_for_update(xp, x, g, wd, maximize, t2)
            xp.multiply(g, g, out=t1)
            acc += t1
            xp.sqrt(acc, out=t1)
            t1 += eps
            xp.divide(g, t1, out=t1)
            t1 *= -clr
            x += t1

        self._chunked(kernel, p, g, state["sum"])
