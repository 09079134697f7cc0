"""Adam (torch.optim.Adam): L2 ``weight_decay`` added to the gradient, optional AMSGrad and maximize.
``AdamW`` (adamw.py) is the same update with decoupled weight decay."""
from __future__ import annotations

import math
from typing import Any, Iterable

from .optimizer import Optimizer, grad_for_update


class Adam(Optimizer):
    """Adam; matches ``torch.optim.Adam`` step for step.

    ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 * v + (1 - beta2) * g * g``,
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)`` (``v`` replaced by its running
    max with ``amsgrad``). State: ``step``, ``exp_avg``, ``exp_avg_sq`` (, ``max_exp_avg_sq``).

    Example:
        >>> opt = nf.optim.Adam(model.parameters(), lr=1e-3)
    """

    decoupled_weight_decay = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False) -> None:
        name = type(self).__name__
        if lr < 0.0:
            raise ValueError(f"{name}: invalid learning rate {lr} (expected >= 0)")
        if eps < 0.0:
            raise ValueError(f"{name}: invalid eps {eps} (expected >= 0)")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{name}: invalid betas {tuple(betas)} (expected each in [0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"{name}: invalid weight_decay {weight_decay} (expected >= 0)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def init_state(self, p, group: dict) -> dict:
        xp = p._backend.xp
        state = {"step": 0, "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def update(self, p, g, state: dict, group: dict) -> None:
        xp = p._backend.xp
        state["step"] += 1
        step = state["step"]
        lr, eps, wd, maximize = group["lr"], group["eps"], group["weight_decay"], group["maximize"]
        beta1, beta2 = group["betas"]
        step_size = lr / (1.0 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
        decay = 1.0 - lr * wd if self.decoupled_weight_decay else 1.0
        l2 = 0.0 if self.decoupled_weight_decay else wd

        kernels = None if group["amsgrad"] else p._backend.kernels_for(p.data, state["exp_avg"], state["exp_avg_sq"])
        if kernels is not None and g.dtype == p.data.dtype:
            kernels.adam_step(p.data, g, state["exp_avg"], state["exp_avg_sq"], beta1, beta2, step_size,
                              bias_correction2_sqrt, eps, decay, l2, maximize)
            return

        def kernel(x, g, m, v, *rest):
            *vmax, t1, t2 = rest
            g = grad_for_update(xp, x, g, l2, maximize, t2)
            if decay != 1.0:
                x *= decay
            xp.subtract(g, m, out=t1)  # m = lerp(m, g, 1 - beta1)
            t1 *= 1.0 - beta1
            m += t1
            xp.multiply(g, g, out=t1)  # v = beta2 * v + (1 - beta2) * g^2
            t1 *= 1.0 - beta2
            v *= beta2
            v += t1
            if vmax:
                xp.maximum(vmax[0], v, out=vmax[0])
                v = vmax[0]
            xp.sqrt(v, out=t1)  # denominator: sqrt(v) / sqrt(1 - beta2^t) + eps
            t1 /= bias_correction2_sqrt
            t1 += eps
            xp.divide(m, t1, out=t1)
            t1 *= -step_size
            x += t1

        arrays = [state["exp_avg"], state["exp_avg_sq"]]
        if group["amsgrad"]:
            arrays.append(state["max_exp_avg_sq"])
        self._chunked(kernel, p, g, *arrays)
