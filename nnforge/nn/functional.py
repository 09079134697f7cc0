"""Stateless neural-network functions (``torch.nn.functional`` names)."""
from __future__ import annotations

from ..ops.activation import gelu, log_softmax, silu, softmax
from ..ops.math import relu, sigmoid, tanh

__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax"]
