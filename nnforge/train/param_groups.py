"""Optimizer parameter groups for fine-tuning: layer-wise learning-rate decay (LLRD) and no-decay sets.

LLRD (Howard & Ruder 2018; Clark et al. 2020): the layers near the input hold general features and should move
less than the top ones, so a transformer block at depth ``d`` (embeddings 0, block ``i`` at ``i + 1``) trains
with ``lr * decay ** (L + 1 - d)`` for ``L`` blocks; everything above the last block (pooler, final norm,
task heads) trains at the full ``lr``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["layerwise_lr_decay_groups", "parameter_depth"]

# block index in BERT (encoder.layer.N), GPT-2 (h.N) and Llama (layers.N) names, at any nesting depth
_BLOCK = re.compile(r"(?:^|\.)(?:layer|h|layers)\.(\d+)\.")
# input embeddings of the three families
_EMBEDDING = re.compile(r"(?:^|\.)(?:embeddings|wte|wpe|embed_tokens)\.")


def parameter_depth(name: str, num_layers: int) -> int:
    """0 for input embeddings, ``i + 1`` for a parameter of block ``i``, ``num_layers + 1`` for the rest."""
    m = _BLOCK.search(name)
    if m is not None:
        return int(m.group(1)) + 1
    if _EMBEDDING.search(name):
        return 0
    return num_layers + 1


def layerwise_lr_decay_groups(model: Any, lr: float, decay: float = 0.9, weight_decay: float = 0.0,
                              no_decay: Iterable[str] = ("bias", "LayerNorm.weight", "norm", "ln_"),
                              num_layers: int | None = None) -> list[dict]:
    """Parameter groups with learning rate ``lr * decay ** (num_layers + 1 - depth)`` (see
    ``parameter_depth``) and ``weight_decay`` except for names containing a ``no_decay`` substring (biases and
    normalisation weights get 0). Frozen parameters (``requires_grad=False``) are left out.

    Args:
        model: a BERT / GPT-2 / Llama model (bare or with a head, or a user Module holding one).
        num_layers: number of transformer blocks; default ``model.config.num_hidden_layers``, else one more than
            the largest block index in the parameter names.

    Returns:
        a list of ``{"params", "lr", "weight_decay", "names", "depth"}`` dicts, from the embeddings up, one per
        (depth, decay or not) that has trainable parameters; pass it to any ``nnforge.optim`` optimizer.

    Example:
        >>> groups = layerwise_lr_decay_groups(model, lr=5e-5, decay=0.9, weight_decay=0.01)
        >>> opt = nf.optim.AdamW(groups, lr=5e-5)
    """
    if not 0 < decay <= 1:
        raise ValueError(f"layerwise_lr_decay_groups: decay must be in (0, 1], got {decay}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if num_layers is None:
        config = getattr(model, "config", None)
        num_layers = getattr(config, "num_hidden_layers", None)
    if num_layers is None:
        indices = [int(m.group(1)) for n, _ in named if (m := _BLOCK.search(n))]
        num_layers = max(indices) + 1 if indices else 0
    skip = tuple(no_decay)
    groups: dict = {}
    for name, p in named:
        depth = parameter_depth(name, num_layers)
        wd = 0.0 if any(s in name for s in skip) else weight_decay
        group = groups.get((depth, wd))
        if group is None:
            group = groups[(depth, wd)] = {"params": [], "names": [], "depth": depth, "weight_decay": wd,
                                           "lr": lr * decay ** (num_layers + 1 - depth)}
        group["params"].append(p)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], -k[1]))]
