"""Conv1d and Conv2d (torch.nn layout: weight (out_channels, in_channels/groups, *kernel_size), bias)."""
from __future__ import annotations

import math
from typing import Any

from ... import dtypes as _dt
from ...creation import empty
from ...ops.conv import conv_nd, ntuple
from ...tensor import Tensor
from .. import init
from ..parameter import Parameter
from .module import Module


class _ConvNd(Module):
    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        nd = self._nd
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = ntuple(kernel_size, nd, "kernel_size", name)
        self.stride = ntuple(stride, nd, "stride", name)
        self.padding = padding if isinstance(padding, str) else ntuple(padding, nd, "padding", name)
        self.dilation = ntuple(dilation, nd, "dilation", name)
        if padding == "same" and any(s != 1 for s in self.stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        self.padding_mode = padding_mode
        dt = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
        self.weight = Parameter(empty(out_channels, in_channels // groups, *self.kernel_size, dtype=dt, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dt, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for weight and bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return conv_nd(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                       self._nd, self)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) as ``torch.nn.Conv2d``; padding: int, pair, "valid" or "same".

    Only ``padding_mode="zeros"``. Outputs are channels-last in memory (use ``reshape``/``flatten``, not
    ``view(N, -1)``, directly on a convolution's output; pooling outputs are contiguous).

    >>> nf.nn.Conv2d(1, 8, 3, padding=1)(nf.randn(2, 1, 28, 28)).shape
    (2, 8, 28, 28)
    """

    _nd = 2


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) as ``torch.nn.Conv1d``; weight (out, in/groups, k)."""

    _nd = 1
