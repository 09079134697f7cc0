"""Dropout: active in training mode, the identity in eval mode."""
from __future__ import annotations

from ...ops.dropout import dropout
from ...tensor import Tensor
from .module import Module


class Dropout(Module):
    """Zero elements with probability ``p`` while training, scaling the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
