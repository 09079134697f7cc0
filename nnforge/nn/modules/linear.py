"""Linear (y = x W^T + b) and Identity."""
from __future__ import annotations

import math
from typing import Any

from ... import dtypes as _dt
from ...ops.linear import linear
from ...creation import empty
from ...tensor import Tensor
from .. import init
from ..parameter import Parameter
from .module import Module


class Identity(Module):
    """Returns its input unchanged (accepts and ignores any constructor arguments)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


class Linear(Module):
    """``y = x @ weight.T + bias`` with weight (out_features, in_features), torch's default init:
    kaiming_uniform_(a=sqrt(5)) for the weight, U(-1/sqrt(in), 1/sqrt(in)) for the bias.

    Shape: (*, in_features) -> (*, out_features).

    >>> nf.nn.Linear(4, 3)(nf.randn(2, 4)).shape
    (2, 3)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        dt = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
        self.weight = Parameter(empty(out_features, in_features, dtype=dt, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dt, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise RuntimeError(f"{type(self).__name__}(in_features={self.in_features}, out_features="
                               f"{self.out_features}): expected input with last dimension {self.in_features}, got shape "
                               f"{tuple(input.shape)}")
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
