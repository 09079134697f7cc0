"""Utilities (torch.utils): ``nnforge.utils.data`` for datasets, samplers and the DataLoader."""
from . import data

__all__ = ["data"]
