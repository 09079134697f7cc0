"""Utilities (torch.utils): ``nnforge.utils.data`` for datasets, samplers and the DataLoader;
``nnforge.utils.checkpoint`` for gradient checkpointing."""
from . import checkpoint, data

__all__ = ["checkpoint", "data"]
