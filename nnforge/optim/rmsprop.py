"""RMSprop (torch.optim.RMSprop): running mean of squared gradients, optionally centered, with momentum."""
from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, grad_for_update


class RMSprop(Optimizer):
    """RMSprop; matches ``torch.optim.RMSprop`` step for step.

    ``sq = alpha * sq + (1 - alpha) * g * g``; ``avg = sqrt(sq - ga * ga if centered else sq) + eps`` with
    ``ga = lerp(ga, g, 1 - alpha)``; ``p -= lr * g / avg`` or, with momentum,
    ``buf = momentum * buf + g / avg; p -= lr * buf``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        for what, value in (("learning rate", lr), ("eps", eps), ("momentum", momentum),
                            ("weight_decay", weight_decay), ("alpha", alpha)):
            if value < 0.0:
                raise ValueError(f"RMSprop: invalid {what} {value} (expected >= 0)")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def init_state(self, p, group: dict) -> dict:
        xp = p._backend.xp
        state = {"step": 0, "square_avg": xp.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = xp.zeros_like(p.data)
        return state

    def update(self, p, g, state: dict, group: dict) -> None:
        xp = p._backend.xp
        state["step"] += 1
        lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
        wd, maximize, centered = group["weight_decay"], group["maximize"], group["centered"]

        def kernel(x, g, sq, *rest):
            *extra, t1, t2 = rest
            buf = extra.pop(0) if momentum > 0 else None
            g = grad_for_update(xp, x, g, wd, maximize, t2)
            xp.multiply(g, g, out=t1)
            t1 *= 1.0 - alpha
            sq *= alpha
            sq += t1
            if centered:
                ga = extra[0]
                xp.subtract(g, ga, out=t1)  # ga = lerp(ga, g, 1 - alpha)
                t1 *= 1.0 - alpha
                ga += t1
                xp.multiply(ga, ga, out=t1)
                xp.subtract(sq, t1, out=t1)
                xp.sqrt(t1, out=t1)
            else:
                xp.sqrt(sq, out=t1)
            t1 += eps
            xp.divide(g, t1, out=t1)
            if buf is not None:
                buf *= momentum
                buf += t1
                xp.multiply(buf, -lr, out=t1)
            else:
                t1 *= -lr
            x += t1

        arrays = [state["square_avg"]]
        if momentum > 0:
            arrays.append(state["momentum_buffer"])
        if centered:
            arrays.append(state["grad_avg"])
        self._chunked(kernel, p, g, *arrays)
