"""Find and read (or write) the weights of a Hugging Face model directory, whatever format they were saved in.

Reading: ``model.safetensors`` (memory-mapped, each tensor converted once into its final dtype),
``pytorch_model.bin`` (restricted unpickler, no torch), or their sharded ``*.index.json`` forms. Peak memory
is about one copy of the (float32) weights: the file is mapped, not read into memory first.
Writing: ``save_checkpoint`` writes ``model.safetensors``, or shards + ``model.safetensors.index.json`` when
``max_shard_size`` is given, with the names transformers uses.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

_SINGLE = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}


def _read_file(path: Path, dtype) -> dict:
    if path.suffix == ".safetensors":
        from .safetensors_format import SafetensorsFile
        with SafetensorsFile(path) as f:
            return {name: f.get_tensor(name, dtype=dtype) for name in f}
    from .torch_zip import load_state_dict_file
    state = load_state_dict_file(path)
    if dtype is not None:
        for name, a in state.items():
            if a.dtype.kind == "f":
                state[name] = a.astype(dtype, copy=False)
    return state


def load_checkpoint(directory: str | os.PathLike, dtype=np.float32) -> dict:
    """``{name: array}`` from ``model.safetensors``, ``pytorch_model.bin`` or their sharded indexes.

    Args:
        directory: a model folder, or one weights file (``.safetensors`` / ``.bin``).
        dtype: floating-point tensors (F16, BF16, F64...) are converted to it; None keeps them as stored
            (BF16 still becomes float32: NumPy has no bfloat16). Integer and bool tensors are never converted.
    """
    directory = Path(directory)
    if directory.is_file():
        return _read_file(directory, dtype)
    for name in _SINGLE:
        if (directory / name).is_file():
            return _read_file(directory / name, dtype)
    for name in _INDEXES:
        index_path = directory / name
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
                if not isinstance(weight_map, dict):
                    raise TypeError("weight_map is not an object")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{index_path}: not a valid checkpoint index ({e})") from None
            state: dict = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = (directory / shard).resolve()
                if directory.resolve() not in shard_path.parents:
                    raise ValueError(f"{index_path}: shard '{shard}' points outside the model directory")
                if not shard_path.is_file():
                    raise FileNotFoundError(f"{index_path}: shard '{shard}' is missing")
                state.update(_read_file(shard_path, dtype))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise ValueError(f"{index_path}: tensors listed in weight_map are not in their shards: {missing[:10]}")
            return state
    raise FileNotFoundError(f"{directory}: no weights found (looked for {', '.join(_SINGLE + _INDEXES)})")


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    text = str(size).strip().upper()
    for unit, factor in sorted(_SIZE_UNITS.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def save_checkpoint(directory: str | os.PathLike, state: dict, max_shard_size: int | str | None = None,
                    metadata: dict | None = None) -> list[Path]:
    """Write ``{name: array}`` as ``model.safetensors``, or, when it exceeds ``max_shard_size`` (bytes or
    "5GB"-style), as ``model-0000i-of-0000n.safetensors`` shards plus ``model.safetensors.index.json`` like
    transformers' ``save_pretrained``. Returns the files written."""
    from .atomic import atomic_write_text
    from .safetensors_format import write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", **(metadata or {})}
    arrays = {k: np.asarray(v) for k, v in state.items()}
    limit = _parse_size(max_shard_size) if max_shard_size is not None else None
    shards: list[dict] = [{}]
    size = 0
    for name, a in arrays.items():
        if limit is not None and shards[-1] and size + a.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = a
        size += a.nbytes
    # a stale file of the other layout would shadow (or mix with) the new one when loading
    stale = ["model.safetensors.index.json"] if len(shards) == 1 else ["model.safetensors"]
    for old in stale:
        (directory / old).unlink(missing_ok=True)
    if len(shards) == 1:
        write(directory / "model.safetensors", arrays, metadata)
        return [directory / "model.safetensors"]
    files, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        write(directory / fname, shard, metadata)
        files.append(directory / fname)
        weight_map.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": weight_map}
    files.append(atomic_write_text(directory / "model.safetensors.index.json", json.dumps(index, indent=2)))
    return files
