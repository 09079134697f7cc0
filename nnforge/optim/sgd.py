"""SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize (torch.optim.SGD)."""
from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, grad_for_update


class SGD(Optimizer):
    """Stochastic gradient descent; matches ``torch.optim.SGD`` step for step.

    ``buf = momentum * buf + (1 - dampening) * g`` (``buf = g`` on the first step), then
    ``p -= lr * (g + momentum * buf if nesterov else buf)``; ``g`` includes ``weight_decay * p``.

    Example:
        >>> opt = nf.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False) -> None:
        if lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate {lr} (expected >= 0)")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum {momentum} (expected >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay} (expected >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def init_state(self, p, group: dict) -> dict:
        return {"momentum_buffer": None} if group["momentum"] != 0 else {}

    def update(self, p, g, state: dict, group: dict) -> None:
        xp = p._backend.xp
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        nesterov, maximize = group["nesterov"], group["maximize"]
        keep = 1.0 - group["dampening"]
        buf = state.get("momentum_buffer")
        first = momentum != 0 and buf is None
        if first:
            buf = state["momentum_buffer"] = xp.empty_like(p.data)

        def kernel(x, g, *rest):
            *b, t1, t2 = rest
            d = grad_for_update(xp, x, g, wd, maximize, t1)
            if momentum != 0:
                b = b[0]
                if first:
                    xp.copyto(b, d)
                else:
                    b *= momentum
                    if keep != 1.0:
                        xp.multiply(d, keep, out=t2)
                        b += t2
                    else:
                        b += d
                if nesterov:
                    xp.multiply(b, momentum, out=t2)
                    t2 += d
                    d = t2
                else:
                    d = b
            xp.multiply(d, -lr, out=t2)
            x += t2

        self._chunked(kernel, p, g, *(() if buf is None else (buf,)))
