"""``Parameter``: a leaf tensor that a Module registers as trainable state."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that requires grad by default and is registered when assigned to a Module attribute."""

    __slots__ = ()

    def __new__(cls, data: Any = None, requires_grad: bool = True) -> "Parameter":
        # wrap without copying: a Parameter made from a tensor shares its memory, as in torch
        src = data if isinstance(data, Tensor) else Tensor([] if data is None else data)
        return Tensor._make(src.data, src._device, cls)

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
