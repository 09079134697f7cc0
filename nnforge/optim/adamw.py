"""AdamW (torch.optim.AdamW): Adam with decoupled weight decay ``p *= 1 - lr * weight_decay``."""
from __future__ import annotations

from typing import Any, Iterable

from .adam import Adam


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameters directly instead of entering the gradient
    (Loshchilov & Hutter); default ``weight_decay=0.01`` like torch. Matches ``torch.optim.AdamW``.

    Example:
        >>> opt = nf.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    """

    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
