"""The fine-tuning configuration: a dataclass with the defaults of ``nnforge finetune``, YAML load and save.

Precedence: defaults < ``--config FILE.yaml`` < command-line flags. The resolved configuration is written to the
run folder as ``config.yaml``; ``--resume`` reads it back.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["FinetuneConfig", "load_yaml", "save_yaml"]

TASKS = ("classification", "multilabel", "regression")
METHODS = ("full", "head", "lora")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on. The defaults are the measured default run (all-MiniLM-L6-v2 on the
    movie review sentences: >= 85% test accuracy in < 10 minutes on a 2-core CPU; see the README)."""

    model: str = "all-MiniLM-L6-v2"
    data: str | None = None  # None: the movie review sentences (nnforge.datasets)
    text_column: str | None = None
    label_column: str | None = None
    task: str = "classification"
    method: str = "full"
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 64
    seed: int = 0
    output_dir: str | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    evals_per_epoch: int = 2
    save_steps: int | None = 100
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    unicode_form: str = "NFC"
    limit: int | None = None  # use only the first N rows (quick tries)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("epochs", "batch_size", "max_length", "evals_per_epoch", "lora_r"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("max_steps", "save_steps", "limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise UsageError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr!r}")
        if not (0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise UsageError(f"val_fraction + test_fraction must leave training data, got {self.val_fraction} + "
                             f"{self.test_fraction}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "configuration") -> FinetuneConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        out = {}
        for k, v in values.items():
            out[k] = _coerce(k, v, known[k].type, source)
        return cls(**out)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> FinetuneConfig:
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})


def _coerce(name: str, value: Any, annotation: str, source: str) -> Any:
    """YAML gives ints for ``1e-4``-less floats etc.: bring a value to the field's type, or say what is wrong."""
    if value is None:
        return None
    base = str(annotation).split("|")[0].strip()
    try:
        if base == "int" and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base == "float":
            return float(value)
        if base == "str":
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise UsageError(f"{source}: {name} must be {base}, got {value!r}")


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is a core dependency
        raise UsageError("YAML configuration files need PyYAML: pip install pyyaml") from e
    return yaml


def load_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (an empty file is ``{}``); a one-line UsageError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such configuration file")
    yaml = _yaml()
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def save_yaml(values: dict, path: str | os.PathLike) -> Path:
    """Write ``values`` as YAML atomically."""
    from ..io.atomic import atomic_write_text

    return atomic_write_text(path, _yaml().safe_dump(values, sort_keys=False))
