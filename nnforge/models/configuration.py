"""``PretrainedConfig``: a model's hyper-parameters, read from and written to Hugging Face ``config.json``."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any


class PretrainedConfig:
    """Attribute bag over ``config.json``; subclasses set ``model_type`` and the defaults of their architecture.

    Unknown keys are kept (and written back), so a config survives a load/save round trip unchanged.
    """

    model_type: str = ""
    defaults: dict = {}

    def __init__(self, **kwargs: Any) -> None:
        values = copy.deepcopy(self.defaults)
        values.update(kwargs)
        values.setdefault("model_type", self.model_type)
        if "num_labels" in values and "id2label" not in values:
            values["id2label"] = {i: f"LABEL_{i}" for i in range(int(values["num_labels"]))}
        if "id2label" in values:
            values["id2label"] = {int(k): v for k, v in values["id2label"].items()}
            values["label2id"] = values.get("label2id") or {v: k for k, v in values["id2label"].items()}
            values.pop("num_labels", None)
        self.__dict__.update(values)

    @property
    def num_labels(self) -> int:
        return len(self.__dict__.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"})

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if self.__dict__.get("id2label") is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__} has no field '{name}'")

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def to_dict(self) -> dict:
        out = copy.deepcopy(self.__dict__)
        if "id2label" in out:
            out["id2label"] = {str(k): v for k, v in out["id2label"].items()}
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from ..io.atomic import atomic_write_text

        path = Path(directory) / "config.json"
        atomic_write_text(path, self.to_json_string())
        return path

    @classmethod
    def from_dict(cls, values: dict, **overrides: Any) -> "PretrainedConfig":
        merged = dict(values)
        if "num_labels" in overrides and "id2label" not in overrides:
            n = int(overrides.pop("num_labels"))
            old = merged.get("id2label")
            if not old or len(old) != n:
                merged.pop("label2id", None)
                merged["id2label"] = {i: f"LABEL_{i}" for i in range(n)}
        merged.update(overrides)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "PretrainedConfig":
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
        return cls.from_dict(values, **overrides)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, **overrides: Any) -> "PretrainedConfig":
        from ..hub import resolve_model_path

        path = resolve_model_path(path_or_name)
        if path.is_file():
            raise ValueError(f"{path}: config.json comes from a model directory; for GGUF files use "
                             f"the model class's from_pretrained")
        return cls.from_json_file(path / "config.json", **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()
