"""Find and read the weights of a Hugging Face model directory, whatever format they were saved in."""
from __future__ import annotations

import json
import os
from pathlib import Path

_SINGLE = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _read_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from .safetensors_format import read
        return read(path)[0]
    from .torch_zip import load_state_dict_file
    return load_state_dict_file(path)


def load_checkpoint(directory: str | os.PathLike) -> dict:
    """``{name: array}`` from ``model.safetensors``, ``pytorch_model.bin`` or their sharded indexes."""
    directory = Path(directory)
    for name in _SINGLE:
        if (directory / name).is_file():
            return _read_file(directory / name)
    for name in _INDEXES:
        index_path = directory / name
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{index_path}: not a valid checkpoint index ({e})") from None
            state: dict = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = (directory / shard).resolve()
                if directory.resolve() not in shard_path.parents:
                    raise ValueError(f"{index_path}: shard '{shard}' points outside the model directory")
                if not shard_path.is_file():
                    raise FileNotFoundError(f"{index_path}: shard '{shard}' is missing")
                state.update(_read_file(shard_path))
            return state
    raise FileNotFoundError(f"{directory}: no weights found (looked for {', '.join(_SINGLE + _INDEXES)})")
