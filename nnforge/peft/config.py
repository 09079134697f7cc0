"""``LoraConfig``: LoRA hyper-parameters, read from and written to PEFT's ``adapter_config.json``.

The JSON fields and their meaning are Hugging Face PEFT's (``peft.LoraConfig``), so an adapter directory
written here loads with ``peft.PeftModel.from_pretrained`` and one written by PEFT loads here. Fields that
change the computation in ways nnforge does not implement (DoRA, LoRA bias terms, layer selection,
parameter targeting) are rejected when set, never silently ignored.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

__all__ = ["CONFIG_NAME", "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING", "LoraConfig"]

CONFIG_NAME = "adapter_config.json"

# model_type -> default target modules when ``target_modules`` is None (PEFT's mapping for these architectures)
TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"], "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
}

# task_type -> head modules that PEFT's task wrappers always add to ``modules_to_save``
_TASK_MODULES_TO_SAVE = {"SEQ_CLS": ["classifier", "score"], "TOKEN_CLS": ["classifier", "score"]}
_TASK_TYPES = {"SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"}
_BIAS = ("none", "all", "lora_only")
# PEFT fields that must keep their "off" value here: name -> the accepted values
_UNSUPPORTED = {"use_dora": (False, None), "lora_bias": (False, None), "layers_to_transform": (None, []),
                "target_parameters": (None, []), "trainable_token_indices": (None,), "layer_replication": (None,),
                "use_qalora": (False, None), "use_bdlora": (None, False)}


@dataclass
class LoraConfig:
    """LoRA: ``y = base(x) + (lora_alpha / r) * lora_B(lora_A(dropout(x)))`` on every targeted Linear.

    Args:
        r: adapter rank.
        lora_alpha: scaling numerator (``scaling = lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with
            ``use_rslora``).
        lora_dropout: dropout probability on the adapter's input.
        target_modules: module names; a module matches when its full name equals an entry or ends with
            ``"." + entry``. A str is a regular expression that must match the full name. None takes the
            default for the model's ``config.model_type`` (bert: query, value; gpt2: c_attn; llama: q_proj, v_proj).
        exclude_modules: names (same rules) never adapted.
        modules_to_save: modules (name suffixes) trained in full and saved with the adapter, e.g. a new
            classification head. ``task_type`` "SEQ_CLS"/"TOKEN_CLS" adds "classifier" and "score" as PEFT does.
        bias: "none", "all" (train and save every bias) or "lora_only" (the biases of the adapted Linears).
        fan_in_fan_out: PEFT's flag for layers stored (in, out) (GPT-2's Conv1D). nnforge's GPT-2 uses
            Linear (out, in) layers, so the flag does not change the computation; ``get_peft_model`` sets it
            to True for GPT-2's c_attn/c_proj/c_fc so that PEFT reads the adapter correctly.
        init_lora_weights: True (A kaiming-uniform, B zeros: an exact no-op at start), "gaussian"
            (A ~ N(0, 1/r), B zeros) or False (both kaiming-uniform; for tests).
        rank_pattern, alpha_pattern: per-module overrides of r / lora_alpha, keyed by regular expressions
            matched against the end of the module name (PEFT's rule).

    >>> config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list | str | None = None
    exclude_modules: list | str | None = None
    modules_to_save: list | None = None
    bias: str = "none"
    fan_in_fan_out: bool = False
    task_type: str | None = None
    init_lora_weights: bool | str = True
    use_rslora: bool = False
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    inference_mode: bool = False
    base_model_name_or_path: str | None = None
    revision: str | None = None
    peft_type: str = "LORA"

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoraConfig: r must be a positive int, got {self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.bias not in _BIAS:
            raise ValueError(f"LoraConfig: bias must be one of {_BIAS}, got {self.bias!r}")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ValueError(f"LoraConfig: init_lora_weights must be True, False or 'gaussian', got "
                             f"{self.init_lora_weights!r}")
        if self.peft_type != "LORA":
            raise ValueError(f"LoraConfig: peft_type {self.peft_type!r} is not LoRA (only 'LORA' adapters are "
                             f"supported)")
        if self.task_type is not None and self.task_type not in _TASK_TYPES:
            raise ValueError(f"LoraConfig: unknown task_type {self.task_type!r} (expected one of "
                             f"{sorted(_TASK_TYPES)})")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                setattr(self, name, list(value))
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        extra = _TASK_MODULES_TO_SAVE.get(self.task_type, [])
        if extra:
            own = self.modules_to_save or []
            self.modules_to_save = own + [m for m in extra if m not in own]

    def rank_and_alpha(self, module_name: str) -> tuple[int, float]:
        """``(r, lora_alpha)`` for one module, after ``rank_pattern`` / ``alpha_pattern``."""
        r = self.rank_pattern.get(_pattern_key(self.rank_pattern, module_name), self.r)
        return r, self.alpha_pattern.get(_pattern_key(self.alpha_pattern, module_name), self.lora_alpha)

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        for name, off in _UNSUPPORTED.items():  # PEFT's own defaults, so that its loader sees a complete config
            d[name] = off[0]
        d.update(layers_pattern=None, megatron_config=None, megatron_core="megatron.core", loftq_config={})
        return d

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from ..io.atomic import atomic_write_text

        path = Path(directory) / CONFIG_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, values: dict) -> LoraConfig:
        """Build from PEFT's JSON fields; fields that only other PEFT features use are ignored when off and
        rejected when on."""
        for name, accepted in _UNSUPPORTED.items():
            if values.get(name, accepted[0]) not in accepted:
                raise NotImplementedError(f"LoraConfig: the adapter sets {name}={values[name]!r}, which nnforge.peft "
                                          f"does not implement")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> LoraConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"LoraConfig: no {CONFIG_NAME} in {directory}")
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def _pattern_key(patterns: dict, module_name: str) -> str | None:
    """The first key of ``patterns`` whose regex matches the end of ``module_name`` (PEFT's ``get_pattern_key``)."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module_name):
            return key
    return None
