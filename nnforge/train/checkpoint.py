"""Training-state checkpoints: one directory per step, written atomically, read back without pickle.

``output_dir/checkpoint-<step>/`` holds:

- ``model.safetensors``: ``model.state_dict()`` (parameters and buffers);
- ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's state tensors (``state.<index>.<name>``) and
  everything else of its ``state_dict()`` (param groups, non-tensor state entries);
- ``scheduler.json``: the lr scheduler's ``state_dict()`` (when there is one);
- ``trainer_state.json``: step, epoch, position in the epoch, data-order and RNG states (see ``Trainer``);
- ``COMPLETE``: written last, a manifest with the size and SHA-256 of every other file.

Protocol: everything is written into ``checkpoint-<step>.tmp-XXXX`` (each file fsynced), the ``COMPLETE``
manifest last, then the directory is renamed into place and its parent fsynced. A process killed at any
moment thus leaves either no ``checkpoint-<step>`` or a complete one; leftovers (``*.tmp-*``, ``*.trash-*``)
are removed by ``remove_stale``. Readers only trust directories whose manifest matches their files.
JSON and safetensors only: no pickle anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_open, fsync_dir
from ..serialization import load, save
from ..tensor import Tensor

__all__ = ["CheckpointError", "from_json", "list_checkpoints", "read_checkpoint", "remove_stale", "rotate_checkpoints",
           "save_checkpoint", "to_json"]

PREFIX = "checkpoint-"
COMPLETE = "COMPLETE"
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
SCHEDULER_JSON = "scheduler.json"
TRAINER_STATE = "trainer_state.json"
_FINAL = re.compile(r"^checkpoint-(\d+)$")
_STALE = re.compile(r"^checkpoint-\d+\.(tmp|trash)-")


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete, corrupt or does not match the manifest."""


# -- JSON with tuples, Counters and non-string keys (scheduler and optimizer states hold them) ----------------
def to_json(obj: Any, where: str = "state") -> Any:
    """``obj`` as plain JSON values; tuples, ``Counter`` and dicts with non-string keys become tagged objects
    (``from_json`` undoes it). Floats keep every bit (JSON numbers are written with ``repr``)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Integral):
        return int(obj)
    if isinstance(obj, Real):
        return float(obj)
    if isinstance(obj, Counter):
        return {"__counter__": [[to_json(k, where), int(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [to_json(v, where) for v in obj]}
    if isinstance(obj, list):
        return [to_json(v, where) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: to_json(v, f"{where}.{k}") for k, v in obj.items()}
        return {"__items__": [[to_json(k, where), to_json(v, f"{where}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: {where} is a {type(obj).__name__}, which cannot be stored as JSON "
                    f"(expected numbers, strings, lists, tuples and dicts)")


def from_json(obj: Any) -> Any:
    """Inverse of ``to_json``."""
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tuple__"}:
        return tuple(from_json(v) for v in obj["__tuple__"])
    if set(obj) == {"__counter__"}:
        return Counter({from_json(k): v for k, v in obj["__counter__"]})
    if set(obj) == {"__items__"}:
        return {from_json(k): from_json(v) for k, v in obj["__items__"]}
    return {k: from_json(v) for k, v in obj.items()}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_open(path) as f:
        f.write(json.dumps(obj, indent=1).encode("utf-8"))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- optimizer state_dict <-> (tensors, JSON) ---------------------------------------------------------------------
def _split_optimizer(sd: dict) -> tuple[dict, dict]:
    tensors, state = {}, {}
    for index, entries in sd["state"].items():
        state[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                state[str(index)][name] = value
    return tensors, {"param_groups": sd["param_groups"], "state": state}


def _join_optimizer(tensors: dict, meta: dict) -> dict:
    state = {k: dict(v) for k, v in meta["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(index, {})[name] = value
    return {"param_groups": meta["param_groups"], "state": state}


# -- writing ------------------------------------------------------------------------------------------------------
def save_checkpoint(output_dir: str | os.PathLike, step: int, model: Any, optimizer: Any, scheduler: Any,
                    trainer_state: dict) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically (see the module docstring); returns its path.

    An existing directory of that name (e.g. a corrupt one skipped at resume) is replaced only once the new
    one is complete."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"{PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=output_dir))
    try:
        save(model.state_dict(), tmp / MODEL_FILE)
        opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
        save(opt_tensors, tmp / OPTIMIZER_TENSORS)
        _write_json(tmp / OPTIMIZER_JSON, to_json(opt_meta, "optimizer"))
        if scheduler is not None:
            _write_json(tmp / SCHEDULER_JSON, to_json(scheduler.state_dict(), "scheduler"))
        _write_json(tmp / TRAINER_STATE, to_json(trainer_state, "trainer_state"))
        files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
        _write_json(tmp / COMPLETE, {"step": int(step), "files": files})
        fsync_dir(tmp)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(output_dir)
    return final


def _discard(directory: Path) -> None:
    """Delete a checkpoint directory: first renamed out of the ``checkpoint-<step>`` namespace (atomic), so a
    crash mid-delete never leaves a half-deleted directory under a checkpoint's name."""
    trash = Path(tempfile.mkdtemp(prefix=f"{directory.name}.trash-", dir=directory.parent))
    os.replace(directory, trash / directory.name)
    fsync_dir(directory.parent)
    shutil.rmtree(trash, ignore_errors=True)


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-<step>`` directories of ``output_dir`` that carry a ``COMPLETE`` marker, oldest first
    (by step). The marker is not verified here; ``read_checkpoint`` does that."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for p in output_dir.iterdir():
        m = _FINAL.match(p.name)
        if m and (p / COMPLETE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def rotate_checkpoints(output_dir: str | os.PathLike, keep: int | None) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints; returns the deleted paths."""
    if keep is None:
        return []
    if keep < 1:
        raise ValueError(f"rotate_checkpoints: keep (save_total_limit) must be >= 1, got {keep}")
    old = list_checkpoints(output_dir)[:-keep]
    for p in old:
        _discard(p)
    return old


def remove_stale(output_dir: str | os.PathLike) -> None:
    """Remove the temporary and trash directories that a killed save or delete left behind."""
    output_dir = Path(output_dir)
    if output_dir.is_dir():
        for p in output_dir.iterdir():
            if _STALE.match(p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> dict:
    """Verify ``path`` against its manifest and read it fully into memory.

    Returns ``{"model": {name: Tensor}, "optimizer": state_dict, "scheduler": dict | None,
    "trainer_state": dict}``. Raises ``CheckpointError`` for a missing marker, a file whose size or hash
    differs from the manifest, or a file that does not parse."""
    path = Path(path)
    try:
        manifest = _read_json(path / COMPLETE)
        files = manifest["files"]
        for name, info in files.items():
            f = path / name
            if not f.is_file() or f.stat().st_size != info["size"] or _sha256(f) != info["sha256"]:
                raise CheckpointError(f"{f}: missing, or its size or SHA-256 differs from the manifest")
        for name in (MODEL_FILE, OPTIMIZER_TENSORS, OPTIMIZER_JSON, TRAINER_STATE):
            if name not in files:
                raise CheckpointError(f"{path}: the manifest lists no {name}")
        return {"model": load(path / MODEL_FILE),
                "optimizer": _join_optimizer(load(path / OPTIMIZER_TENSORS),
                                             from_json(_read_json(path / OPTIMIZER_JSON))),
                "scheduler": from_json(_read_json(path / SCHEDULER_JSON)) if SCHEDULER_JSON in files else None,
                "trainer_state": from_json(_read_json(path / TRAINER_STATE))}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
