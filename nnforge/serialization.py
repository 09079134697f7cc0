"""``nf.save`` / ``nf.load``: tensors and state dicts in the safetensors format (no pickle, atomic writes)."""
from __future__ import annotations

import os
from typing import Any

from .creation import from_numpy
from .io import safetensors_format
from .tensor import Tensor

_SINGLE = "nnforge.single_tensor"  # metadata key marking a file that holds one bare tensor
_SINGLE_NAME = "tensor"


def save(obj: Any, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Save a Tensor, or a flat dict of ``str -> Tensor | NumPy array``, to ``path`` as safetensors.

    String values of the dict (and ``metadata``) go to the file's ``__metadata__``. The write is atomic:
    a crash or error mid-write leaves any previous file at ``path`` intact. Deviation from torch.save:
    only tensors, arrays and string metadata are stored (no pickle of arbitrary objects).

    Example:
        >>> nf.save(model.state_dict(), "model.safetensors")
        >>> model.load_state_dict(nf.load("model.safetensors"))
    """
    meta = dict(metadata or {})
    if isinstance(obj, Tensor):
        tensors = {_SINGLE_NAME: obj}
        meta[_SINGLE] = "1"
    elif isinstance(obj, dict):
        tensors = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"nf.save: keys must be strings, got {type(k).__name__} ({k!r})")
            if isinstance(v, str):
                meta[k] = v
            elif isinstance(v, Tensor) or hasattr(v, "__array__") and hasattr(v, "dtype"):
                tensors[k] = v
            else:
                raise TypeError(f"nf.save: value for {k!r} is a {type(v).__name__}; expected a Tensor, a NumPy "
                                f"array or a str (nested containers and arbitrary objects are not saved)")
    else:
        raise TypeError(f"nf.save: expected a Tensor or a dict of str -> Tensor, got {type(obj).__name__}")
    arrays = {k: (v._backend.to_numpy(v.data) if isinstance(v, Tensor) else v) for k, v in tensors.items()}
    safetensors_format.write(path, arrays, meta)


def load(path: str | os.PathLike, return_metadata: bool = False) -> Any:
    """Load what ``save`` wrote (or any safetensors file): a dict of name -> Tensor (fresh copies), or the
    Tensor itself for a file saved from a single tensor. With ``return_metadata=True`` returns
    ``(obj, metadata)``; by default the file's ``__metadata__`` is not merged into the dict, so
    ``model.load_state_dict(nf.load(path))`` works on files from other tools too."""
    arrays, meta = safetensors_format.read(path)
    tensors = {k: from_numpy(a) for k, a in arrays.items()}  # fresh arrays: wrap without another copy
    single = meta.pop(_SINGLE, None) is not None and set(tensors) == {_SINGLE_NAME}
    obj = tensors[_SINGLE_NAME] if single else tensors
    return (obj, meta) if return_metadata else obj
