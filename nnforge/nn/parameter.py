"""``Parameter``: a leaf tensor that a Module registers as trainable state."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that requires grad by default and is registered when assigned to a Module attribute."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = []
        src = data.data if isinstance(data, Tensor) else data
        super().__init__(src, dtype=getattr(src, "dtype", None), device=data.device if isinstance(data, Tensor) else None)
        if isinstance(data, Tensor):
            self.data = data.data  # share memory with the tensor it wraps, as torch does
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
