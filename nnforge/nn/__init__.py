"""Neural-network building blocks (``nnforge.nn``)."""
from . import functional

__all__ = ["functional"]
