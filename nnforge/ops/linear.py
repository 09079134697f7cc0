"""Fused affine map ``x @ W.T + b`` (torch.nn.functional.linear), the same followed by GELU in one op
(transformer feed-forward layers), and the leaky ReLU activation.

One GEMM forward; backward does one GEMM per gradient that is actually needed (frozen weights cost nothing).
"""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor


class Linear(Function):
    """x (..., in), weight (out, in), bias (out,) or None -> (..., out)."""

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        x2 = x.reshape(-1, x.shape[-1])
        out = self.backend.linear(x2, w, b)
        self.saved = (x2, w)
        self.x_shape = x.shape
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g: Any) -> tuple:
        x2, w = self.saved
        return _linear_grads(self, g.reshape(-1, w.shape[0]), x2, w, self.x_shape)


def _linear_grads(fn: Function, g2: Any, x2: Any, w: Any, x_shape: tuple) -> tuple:
    """(gx, gw, gb) of ``x2 @ w.T + b`` from the (M, out) gradient ``g2``, each only if needed."""
    xp = fn.backend.xp
    need_x, need_w, need_b = (fn.needs_input_grad + (False, False, False))[:3]
    gx = xp.matmul(g2, w).reshape(x_shape) if need_x else None
    gw = xp.matmul(g2.T, x2) if need_w else None
    gb = g2.sum(axis=0) if need_b else None
    return gx, gw, gb


class LinearGelu(Function):
    """gelu(x @ W.T + b) with the compiled kernels (float32): the bias is added in the activation's pass, not
    written over the whole (tokens x features) output before the GEMM; without a graph the activation then
    overwrites the GEMM's output in place (MiniLM's 1536-wide layer: 28.9-30.6 -> 28.3-28.7 ms). Backward keeps
    x @ W.T + b (GELU's input), as gelu followed by linear would."""

    def forward(self, x: Any, w: Any, b: Any, approximate: str) -> Any:
        x2 = x.reshape(-1, x.shape[-1])
        h = self.backend.linear(x2, w, None)
        kernels = self.backend.kernels_for(h, w, b)
        out = kernels.bias_gelu(h, b, approximate, keep_input=self.records)
        self.saved = (x2, w, h, kernels)
        self.approximate, self.x_shape = approximate, x.shape
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g: Any) -> tuple:
        x2, w, h, kernels = self.saved
        gh = kernels.gelu_grad(g.reshape(h.shape), h, self.approximate)
        return (*_linear_grads(self, gh, x2, w, self.x_shape), None)


class LeakyRelu(Function):
    uses_inputs = False

    def forward(self, a: Any, slope: float) -> Any:
        xp = self.backend.xp
        self.saved = pos = a > 0
        self.slope = slope
        out = a * a.dtype.type(slope)
        xp.copyto(out, a, where=pos)
        return out

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        out = g * g.dtype.type(self.slope)
        xp.copyto(out, g, where=self.saved)
        return out


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``; weight is (out_features, in_features) as in torch."""
    if input.ndim == 0 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(input.shape)} cannot be multiplied by a weight of shape "
                           f"{tuple(weight.shape)} (expected input with last dimension {weight.shape[-1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(f"linear: bias of shape {tuple(bias.shape)} does not match weight of shape "
                           f"{tuple(weight.shape)} (expected ({weight.shape[0]},))")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise RuntimeError(f"linear: dtype mismatch: input {input.dtype}, weight {weight.dtype}"
                           + (f", bias {bias.dtype}" if bias is not None else ""))
    return Linear.apply(input, weight, bias)


def linear_gelu(input: Tensor, weight: Tensor, bias: Tensor, approximate: str = "none") -> Tensor:
    """``gelu(linear(input, weight, bias), approximate)`` in one op where the compiled kernels serve the
    arrays (float32, contiguous), else exactly those two ops."""
    from .activation import gelu

    fused = (bias is not None and input.ndim > 0 and weight.ndim == 2 and input.shape[-1] == weight.shape[1]
             and tuple(bias.shape) == (weight.shape[0],) and input.dtype == weight.dtype
             and input._backend.kernels_for(weight.data, bias.data) is not None)  # float32, contiguous
    if not fused:  # including every bad input: linear and gelu raise their own errors
        return gelu(linear(input, weight, bias), approximate=approximate)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return LinearGelu.apply(input, weight, bias, approximate)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """max(0, x) + negative_slope * min(0, x). ``inplace`` is accepted for torch compatibility (always out of place)."""
    if input.dtype.kind not in "fc":
        raise RuntimeError(f"leaky_relu: expected a floating point input, got {input.dtype}")
    return LeakyRelu.apply(input, float(negative_slope))
