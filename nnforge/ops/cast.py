"""dtype casts and device transfers (both differentiable)."""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..backend import Device
from ..tensor import Tensor


class Cast(Function):
    uses_inputs = False

    def forward(self, a: Any, dtype: Any) -> Any:
        self.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g: Any) -> Any:
        return g.astype(self.in_dtype, copy=False)


def cast(t: Tensor, dtype: Any) -> Tensor:
    return Cast.apply(t, dtype=dtype)


class ToDevice(Function):
    uses_inputs = False

    def forward(self, a: Any, target: Device) -> Any:
        self.source = self.device
        self.out_device = target
        return target.backend.from_numpy(self.backend.to_numpy(a))

    def backward(self, g: Any) -> Any:
        return self.source.backend.from_numpy(self.out_device.backend.to_numpy(g))


def to_device(t: Tensor, target: Device) -> Tensor:
    return ToDevice.apply(t, target=target)
