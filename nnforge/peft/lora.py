"""``LoraLinear``: a frozen ``nn.Linear`` plus a trainable low-rank update (Hu et al. 2021, PEFT's layout).

    y = base_layer(x) + scaling * lora_B(lora_A(lora_dropout(x)))      lora_A (r, in), lora_B (out, r)

Submodule names are PEFT's with the adapter name dropped (``base_layer``, ``lora_A``, ``lora_B``,
``lora_dropout``), so state-dict keys match the keys PEFT writes to ``adapter_model.safetensors``.
The forward pass is one fused op (``_LoraLinearFn``): the base GEMM, the rank-r product and the scaled add
in one node, and a backward that computes only the gradients needed (the frozen base weight costs nothing).
Merged (``merge()``), or disabled, the layer is the base ``linear`` alone.
"""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..autograd.grad_mode import no_grad
from ..nn import init
from ..nn.modules.dropout import Dropout
from ..nn.modules.linear import Identity, Linear
from ..nn.modules.module import Module
from ..ops.linear import linear
from ..tensor import Tensor

__all__ = ["LoraLinear"]


class _LoraLinearFn(Function):
    """x (..., in), xd = dropout(x) (or x itself), weight (out, in), bias (out,) | None, lora_A (r, in),
    lora_B (out, r), scaling -> (..., out)."""

    def forward(self, x: Any, xd: Any, w: Any, b: Any, a: Any, bm: Any, scaling: float) -> Any:
        xp = self.backend.xp
        x2 = x.reshape(-1, x.shape[-1])
        xd2 = x2 if xd is x else xd.reshape(-1, xd.shape[-1])
        out = xp.matmul(x2, w.T)  # (N, out)
        if b is not None:
            out += b
        h = xp.matmul(xd2, a.T)  # (N, r)
        h *= h.dtype.type(scaling)
        out += xp.matmul(h, bm.T)
        self.same_input = xd is x
        self.scaling = scaling
        self.x_shape = x.shape
        self.saved = (x2, xd2, w, a, bm, h)
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        x2, xd2, w, a, bm, h = self.saved
        g2 = g.reshape(-1, w.shape[0])
        need_x, need_xd, need_w, need_b, need_a, need_bm = self.needs_input_grad[:6]
        gx = gxd = gw = gb = ga = gbm = None
        if need_xd or need_a:
            gh = xp.matmul(g2, bm)  # (N, r)
            gh *= gh.dtype.type(self.scaling)
            if need_a:
                ga = xp.matmul(gh.T, xd2)
            if need_xd:
                gxd = xp.matmul(gh, a)
        if need_x:
            gx = xp.matmul(g2, w)
            if self.same_input and gxd is not None:  # one tensor fed both paths: sum here, not in the engine
                gx += gxd
                gxd = None
            gx = gx.reshape(self.x_shape)
        if gxd is not None:
            gxd = gxd.reshape(self.x_shape)
        if need_w:
            gw = xp.matmul(g2.T, x2)
        if need_b:
            gb = g2.sum(axis=0)
        if need_bm:
            gbm = xp.matmul(g2.T, h)  # h already carries the scaling
        return gx, gxd, gw, gb, ga, gbm, None


class LoraLinear(Module):
    """Wrap ``base_layer`` (an ``nn.Linear``, frozen by ``get_peft_model``) with a rank-``r`` adapter.

    ``lora_A`` is initialised like PEFT (kaiming-uniform with a=sqrt(5), i.e. nn.Linear's default) and
    ``lora_B`` to zeros, so a fresh layer computes exactly what ``base_layer`` computes.

    Shape: (*, in_features) -> (*, out_features).

    >>> layer = LoraLinear(nf.nn.Linear(16, 32), r=4, lora_alpha=8)
    >>> layer(nf.randn(2, 16)).shape
    (2, 32)
    """

    def __init__(self, base_layer: Linear, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                 init_lora_weights: bool | str = True, use_rslora: bool = False) -> None:
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"LoraLinear: can only wrap nn.Linear, got {type(base_layer).__name__}")
        if r <= 0:
            raise ValueError(f"LoraLinear: r must be positive, got {r}")
        self.base_layer = base_layer
        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r
        self.lora_alpha = lora_alpha
        self.scaling = lora_alpha / (math.sqrt(r) if use_rslora else r)
        self.lora_dropout = Dropout(lora_dropout) if lora_dropout > 0 else Identity()
        w = base_layer.weight
        self.lora_A = Linear(self.in_features, r, bias=False, dtype=w.dtype, device=w.device)
        self.lora_B = Linear(r, self.out_features, bias=False, dtype=w.dtype, device=w.device)
        self.merged = False
        self.disabled = False
        self.reset_lora_parameters(init_lora_weights)

    def reset_lora_parameters(self, init_lora_weights: bool | str = True) -> None:
        """PEFT's initialisations: True -> A kaiming-uniform(a=sqrt(5)), B zeros; "gaussian" -> A ~ N(0, 1/r),
        B zeros; False -> both keep nn.Linear's default (kaiming-uniform), so the layer is not a no-op."""
        if init_lora_weights is False:
            return
        if init_lora_weights == "gaussian":
            init.normal_(self.lora_A.weight, std=1.0 / self.r)
        else:
            init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        init.zeros_(self.lora_B.weight)

    def forward(self, x: Tensor) -> Tensor:
        base = self.base_layer
        if self.merged or self.disabled:
            return base(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise RuntimeError(f"LoraLinear(in_features={self.in_features}, out_features={self.out_features}, "
                               f"r={self.r}): expected input with last dimension {self.in_features}, got shape "
                               f"{tuple(x.shape)}")
        if x.dtype != base.weight.dtype:
            raise RuntimeError(f"LoraLinear: input dtype {x.dtype} differs from the weight dtype {base.weight.dtype}")
        return _LoraLinearFn.apply(x, self.lora_dropout(x), base.weight, base.bias, self.lora_A.weight,
                                   self.lora_B.weight, float(self.scaling))

    def adapter_forward(self, x: Tensor, base_output: Tensor) -> Tensor:
        """``base_output + scaling * lora_B(lora_A(lora_dropout(x)))`` for a base output computed elsewhere
        (BERT's one GEMM for query, key and value); ``base_output`` itself when merged or disabled."""
        if self.merged or self.disabled:
            return base_output
        h = linear(self.lora_dropout(x), self.lora_A.weight) * self.scaling
        return base_output + linear(h, self.lora_B.weight)

    def delta_weight(self) -> Tensor:
        """``scaling * lora_B @ lora_A``, the (out, in) update that merging adds to the base weight."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merge(self) -> None:
        """Add the update into the base weight (inference without the adapter's extra GEMMs)."""
        if not self.merged:
            with no_grad():
                self.base_layer.weight.add_(self.delta_weight())
            self.merged = True

    def unmerge(self) -> None:
        """Subtract the update again (equal to the unmerged weight up to float rounding)."""
        if self.merged:
            with no_grad():
                self.base_layer.weight.add_(-self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, merged={self.merged}"
