"""Auto classes: pick the architecture from ``config.json``'s ``model_type`` (or a GGUF file's
``general.architecture``) and the task from the Auto class used."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

# model_type -> (module, {task: class name}); a new architecture is one line here.
_ARCHITECTURES: dict[str, tuple[str, dict[str, str]]] = {
    "bert": ("nnforge.models.bert", {"base": "BertModel", "sequence_classification": "BertForSequenceClassification",
                                     "token_classification": "BertForTokenClassification",
                                     "masked_lm": "BertForMaskedLM"}),
    "gpt2": ("nnforge.models.gpt2", {"base": "GPT2Model", "causal_lm": "GPT2LMHeadModel"}),
    "llama": ("nnforge.models.llama", {"base": "LlamaModel", "causal_lm": "LlamaForCausalLM"}),
}


def model_type_of(path: Path) -> str:
    """The architecture name of a model directory or GGUF file."""
    if path.is_file() and path.suffix == ".gguf":
        from ..io.gguf import GGUFReader
        with GGUFReader(path) as reader:
            arch = reader.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise ValueError(f"{path}: GGUF metadata has no general.architecture")
        return arch
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no config.json (is this a Hugging Face model directory?)")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path}: not valid JSON ({e})") from None
    if not model_type:
        raise ValueError(f"{config_path}: no 'model_type' field")
    return model_type


def _class_for(path: Path, task: str, auto_name: str) -> type:
    model_type = model_type_of(path)
    if model_type not in _ARCHITECTURES:
        raise ValueError(f"{path}: model_type '{model_type}' is not supported by nnforge "
                         f"(supported: {', '.join(sorted(_ARCHITECTURES))})")
    module_name, tasks = _ARCHITECTURES[model_type]
    if task not in tasks:
        raise ValueError(f"{auto_name}: no {task.replace('_', ' ')} model for model_type '{model_type}' "
                         f"(available: {', '.join(tasks)})")
    return getattr(importlib.import_module(module_name), tasks[task])


class _AutoModel:
    task = "base"

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is built with {type(self).__name__}.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, **kwargs: Any):
        from ..hub import resolve_model_path
        path = resolve_model_path(path_or_name)
        return _class_for(path, cls.task, cls.__name__).from_pretrained(path, **kwargs)


class AutoModel(_AutoModel):
    task = "base"


class AutoModelForSequenceClassification(_AutoModel):
    task = "sequence_classification"


class AutoModelForTokenClassification(_AutoModel):
    task = "token_classification"


class AutoModelForMaskedLM(_AutoModel):
    task = "masked_lm"


class AutoModelForCausalLM(_AutoModel):
    task = "causal_lm"
