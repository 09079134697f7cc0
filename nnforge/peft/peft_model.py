"""``get_peft_model`` / ``PeftModel``: inject LoRA adapters by module name, train only them, save and load
adapter directories that Hugging Face PEFT reads and writes.

Structure and names follow PEFT: ``PeftModel.base_model`` is a ``LoraModel`` whose ``model`` is the wrapped
model, so full state-dict keys start with ``base_model.model.`` and an adapted Linear ``q`` holds
``q.base_layer``, ``q.lora_A``, ``q.lora_B``. The adapter file holds exactly the keys PEFT writes
(``base_model.model.<module>.lora_A.weight``, ``...lora_B.weight``, each ``modules_to_save`` module's own
keys ``base_model.model.classifier.weight``, biases per ``LoraConfig.bias``).

Deviation from PEFT: a ``modules_to_save`` module is trained in place instead of through a trainable copy
(``ModulesToSaveWrapper``); its file keys are PEFT's, so files are interchangeable, but ``disable_adapter``
does not restore the original head and ``print_trainable_parameters`` counts it once (PEFT counts the copy too).
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.modules.linear import Linear
from ..nn.modules.module import Module
from ..nn.parameter import Parameter
from ..tensor import Tensor
from .config import CONFIG_NAME, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, LoraConfig
from .lora import LoraLinear

__all__ = ["LoraModel", "PeftModel", "get_peft_model"]

WEIGHTS_NAME = "adapter_model.safetensors"
_LEGACY_WEIGHTS_NAME = "adapter_model.bin"
_PREFIX = "base_model.model."
# modules that Hugging Face stores as Conv1D (in, out): PEFT needs fan_in_fan_out=True to read their adapters
_CONV1D_MODULES = {"gpt2": ("c_attn", "c_proj", "c_fc")}


def _matches(name: str, targets: list | str) -> bool:
    """PEFT's rule: a list entry matches the full name or a ``"." + entry`` suffix; a str must fully match."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return name in targets or any(name.endswith("." + t) for t in targets)


class LoraModel(Module):
    """PEFT's tuner layer: holds the adapted model as ``model`` and forwards calls and attributes to it."""

    def __init__(self, model: Module, config: LoraConfig) -> None:
        super().__init__()
        self.model = model
        self.peft_config = config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)


class PeftModel(Module):
    """A model with LoRA adapters. Calls and unknown attributes (``config``, ``generate``, ...) go to the
    wrapped model. Build one with ``get_peft_model(model, config)`` or ``PeftModel.from_pretrained(model, dir)``.

    >>> model = get_peft_model(BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2),
    ...                        LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
    ...                                   modules_to_save=["classifier"]))            # doctest: +SKIP
    >>> model.print_trainable_parameters()                                             # doctest: +SKIP
    >>> model.save_pretrained("adapter/")       # adapter_config.json + adapter_model.safetensors  # doctest: +SKIP
    """

    def __init__(self, model: Module, config: LoraConfig) -> None:
        super().__init__()
        self.base_model = LoraModel(model, config)
        self.lora_module_names: list[str] = []
        self.modules_to_save_names: list[str] = []
        self._inject(config)

    # -- construction --------------------------------------------------------------------------------
    def _inject(self, config: LoraConfig) -> None:
        model = self.base_model.model
        model_config = getattr(model, "config", None)
        model_type = model_config.get("model_type") if model_config is not None else None
        if config.target_modules is None:
            if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
                raise ValueError(f"get_peft_model: target_modules is None and there is no default for model_type "
                                 f"{model_type!r} (defaults exist for "
                                 f"{sorted(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)}); pass target_modules")
            config.target_modules = list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(model, "name_or_path", None) or (
                model_config.get("_name_or_path") if model_config is not None else None)
        saved = config.modules_to_save or []
        under_saved = re.compile(rf"(^|.*\.)({'|'.join(map(re.escape, saved))})($|\..*)") if saved else None

        modules = [(n, m) for n, m in model.named_modules() if n]
        targets = []
        for name, m in modules:
            if under_saved is not None and under_saved.match(name):
                continue  # adapters never go inside a module that is trained whole
            if config.exclude_modules and _matches(name, config.exclude_modules):
                continue
            if _matches(name, config.target_modules):
                if isinstance(m, LoraLinear):
                    raise ValueError(f"get_peft_model: module '{name}' already has a LoRA adapter")
                if type(m) is not Linear:
                    raise ValueError(f"get_peft_model: target module '{name}' is a {type(m).__name__}; LoRA supports "
                                     f"nn.Linear layers only (target_modules={config.target_modules!r})")
                targets.append(name)
        if not targets:
            linears = [n for n, m in modules if type(m) is Linear]
            raise ValueError(f"get_peft_model: target modules {config.target_modules!r} not found in "
                             f"{type(model).__name__}; a list entry must equal a module name or its last dotted "
                             f"parts, a str must match a full name. Some Linear module names: {linears[:12]}")
        if saved:
            self.modules_to_save_names = [n for n, _ in modules if _matches(n, saved)]
            if not self.modules_to_save_names:
                raise ValueError(f"get_peft_model: modules_to_save {saved!r} not found in {type(model).__name__}; "
                                 f"top-level modules: {[n for n, _ in model.named_children()]}")

        # nothing is modified before every name is resolved
        model.requires_grad_(False)
        for name in targets:
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            r, alpha = config.rank_and_alpha(name)
            # replace in place so the submodule keeps its position (ModuleList/Sequential order)
            parent._modules[leaf] = LoraLinear(parent._modules[leaf], r=r, lora_alpha=alpha,
                                               lora_dropout=config.lora_dropout, use_rslora=config.use_rslora,
                                               init_lora_weights=config.init_lora_weights)
        self.lora_module_names = targets
        if any(n.rpartition(".")[2] in _CONV1D_MODULES.get(model_type, ()) for n in targets):
            config.fan_in_fan_out = True

        self._set_trainable(not config.inference_mode)

    def _set_trainable(self, flag: bool) -> None:
        """Adapters, ``modules_to_save`` and the biases chosen by ``config.bias`` get ``requires_grad=flag``."""
        for t in self._adapter_tensors().values():
            if isinstance(t, Parameter):  # not the buffers of a saved module
                t.requires_grad = flag

    # -- forwarding ----------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @property
    def peft_config(self) -> dict:
        return {"default": self.base_model.peft_config}

    @property
    def active_peft_config(self) -> LoraConfig:
        return self.base_model.peft_config

    def get_base_model(self) -> Module:
        return self.base_model.model

    def lora_layers(self) -> Iterator[LoraLinear]:
        for m in self.base_model.model.modules():
            if isinstance(m, LoraLinear):
                yield m

    # -- parameters ----------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        trainable = total = 0
        for p in self.parameters():
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """``trainable params: 1,234 || all params: 5,678 || trainable%: 21.7329`` (PEFT's format)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: "
              f"{100 * trainable / max(total, 1):.4f}")

    # -- merging -------------------------------------------------------------------------------------
    def merge_adapter(self) -> None:
        for m in self.lora_layers():
            m.merge()

    def unmerge_adapter(self) -> None:
        for m in self.lora_layers():
            m.unmerge()

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the LoRA layers as their base Linears inside the block (``modules_to_save`` stay as trained)."""
        layers = list(self.lora_layers())
        for m in layers:
            m.disabled = True
        try:
            yield
        finally:
            for m in layers:
                m.disabled = False

    def merge_and_unload(self) -> Module:
        """Merge every adapter into its base weight and put the plain Linears back; returns the base model."""
        return self._unload(merge=True)

    def unload(self) -> Module:
        """Remove the adapters without merging them; returns the base model."""
        return self._unload(merge=False)

    def _unload(self, merge: bool) -> Module:
        model = self.base_model.model
        for name in self.lora_module_names:
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            layer = parent._modules[leaf]
            if merge:
                layer.merge()
            elif layer.merged:
                layer.unmerge()
            parent._modules[leaf] = layer.base_layer
        self.lora_module_names = []
        return model

    # -- saving and loading --------------------------------------------------------------------------
    def _adapter_tensors(self) -> dict[str, Tensor]:
        """The tensors of the adapter file, by PEFT's key names."""
        config = self.active_peft_config
        model = self.base_model.model
        out: dict[str, Tensor] = {}
        for name in self.lora_module_names:
            layer = model.get_submodule(name)
            out[f"{_PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight
            out[f"{_PREFIX}{name}.lora_B.weight"] = layer.lora_B.weight
            if config.bias == "lora_only" and layer.base_layer.bias is not None:
                out[f"{_PREFIX}{name}.base_layer.bias"] = layer.base_layer.bias
        if config.bias == "all":
            out.update({_PREFIX + k: p for k, p in model.named_parameters() if k == "bias" or k.endswith(".bias")})
        for name in self.modules_to_save_names:
            state = model.get_submodule(name).state_dict(prefix=name, keep_vars=True)
            out.update({_PREFIX + k: t for k, t in state.items()})
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT's key names) atomically;
        nothing of the frozen base model is written."""
        from ..io.safetensors_format import write

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        merged = [m for m in self.lora_layers() if m.merged]
        if merged:
            raise RuntimeError(f"PeftModel.save_pretrained: {len(merged)} LoRA layers are merged into their base "
                               f"weights; call unmerge_adapter() first")
        state = {k: t.detach().numpy() for k, t in self._adapter_tensors().items()}
        write(directory / WEIGHTS_NAME, state, metadata={"format": "pt"})
        config = self.active_peft_config
        inference_mode = config.inference_mode
        config.inference_mode = True  # PEFT writes the config of a saved adapter in inference mode
        try:
            config.save_pretrained(directory)
        finally:
            config.inference_mode = inference_mode
        return directory

    @classmethod
    def from_pretrained(cls, model: Module, model_id: str | os.PathLike, is_trainable: bool = False,
                        config: LoraConfig | None = None) -> PeftModel:
        """Add the adapter saved in directory ``model_id`` (by nnforge or by PEFT) to ``model``. With
        ``is_trainable=False`` (PEFT's default) the adapter is frozen for inference."""
        directory = Path(model_id)
        config = LoraConfig.from_pretrained(directory) if config is None else config
        config.inference_mode = not is_trainable
        peft_model = cls(model, config)
        peft_model.load_adapter_weights(_read_adapter_file(directory), source=str(directory))
        return peft_model

    def load_adapter_weights(self, state: dict, source: str = "adapter") -> None:
        """Copy ``{PEFT key: array}`` into the adapter; every adapter key must be present with its shape."""
        from ..autograd.grad_mode import no_grad

        own = self._adapter_tensors()
        state = {_normalize_key(k): v for k, v in state.items()}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(t.shape)}" for k, t in own.items()
                      if k in state and tuple(state[k].shape) != tuple(t.shape)]
        problems = []
        if mismatched:
            problems.append("size mismatch for " + "; ".join(mismatched))
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                problems.append(f"{what} keys: {keys[:8]}" + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""))
        if problems:
            raise RuntimeError(f"PeftModel: cannot load the adapter from {source} into "
                               f"{type(self.base_model.model).__name__}: " + " | ".join(problems))
        with no_grad():
            for k, t in own.items():
                t.copy_(t._backend.asarray(np.asarray(state[k], dtype=t.dtype)))

    def extra_repr(self) -> str:
        c = self.active_peft_config
        return f"r={c.r}, lora_alpha={c.lora_alpha}, adapted={len(self.lora_module_names)} Linear layers"


def get_peft_model(model: Module, peft_config: LoraConfig) -> PeftModel:
    """Wrap ``model`` with LoRA adapters on the modules named by ``peft_config.target_modules``; everything
    else is frozen except ``modules_to_save`` (and biases per ``peft_config.bias``). The model is modified in
    place (its targeted Linears are replaced by ``LoraLinear``).

    >>> peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))  # doctest: +SKIP
    """
    if not isinstance(peft_config, LoraConfig):
        raise TypeError(f"get_peft_model: expected a LoraConfig, got {type(peft_config).__name__}")
    if isinstance(model, PeftModel):
        raise TypeError("get_peft_model: the model already is a PeftModel")
    return PeftModel(model, peft_config)


def _normalize_key(key: str) -> str:
    """Older PEFT files may keep the adapter name (``lora_A.default.weight``, ``modules_to_save.default.``)."""
    key = key.replace(".modules_to_save.default.", ".")
    return re.sub(r"\.(lora_[AB])\.default\.", r".\1.", key)


def _read_adapter_file(directory: Path) -> dict:
    if (directory / WEIGHTS_NAME).is_file():
        from ..io.safetensors_format import read

        return read(directory / WEIGHTS_NAME)[0]
    if (directory / _LEGACY_WEIGHTS_NAME).is_file():
        from ..io.torch_zip import load_state_dict_file

        return load_state_dict_file(directory / _LEGACY_WEIGHTS_NAME)
    raise FileNotFoundError(f"PeftModel: no {WEIGHTS_NAME} (or {_LEGACY_WEIGHTS_NAME}) in {directory}; "
                            f"{CONFIG_NAME} {'exists' if (directory / CONFIG_NAME).is_file() else 'is missing too'}")
