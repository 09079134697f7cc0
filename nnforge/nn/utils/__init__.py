"""Module utilities (torch.nn.utils): gradient clipping and parameter counting."""
from __future__ import annotations

from typing import Any

from . import rnn
from .clip_grad import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "count_parameters", "rnn"]


def count_parameters(model: Any, trainable_only: bool = True) -> int:
    """Number of parameter elements in ``model`` (only those requiring grad when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
