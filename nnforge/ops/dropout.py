"""Dropout: zero each element with probability ``p`` and scale the survivors by ``1/(1-p)``."""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..random import Generator, _rng
from ..tensor import Tensor


def keep_mask(shape: tuple, p: float, generator: Any = None) -> Any:
    """Boolean array, True with probability ``1 - p``: 16-bit uniform integers compared with round(p * 2^16)
    (p resolved to 1.5e-5, which no training notices), twice as fast as drawing floats."""
    return _rng(generator).integers(0, 1 << 16, size=shape, dtype="uint16") >= round(p * 65536)


class Dropout(Function):
    uses_inputs = False

    def forward(self, a: Any, p: float, generator: Any) -> Any:
        keep = keep_mask(a.shape, p, generator)
        self.saved = keep
        self.scale = a.dtype.type(1.0 / (1.0 - p))
        out = a * self.scale
        out *= keep
        return out

    def backward(self, g: Any) -> Any:
        out = g * self.scale
        out *= self.saved
        return out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            generator: Generator | None = None) -> Tensor:
    """Randomly zero elements with probability ``p`` (training only) using the global generator (or
    ``generator``), scaling the rest by ``1/(1-p)``. ``inplace`` is accepted for torch compatibility."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    if input.dtype.kind != "f":
        raise RuntimeError(f"dropout: expected a floating point input, got {input.dtype}")
    return Dropout.apply(input, float(p), generator)
