"""Model outputs: dict-like objects with attribute access, like Hugging Face's ``ModelOutput``.

Fields that are None are left out of the dict and of tuple indexing, so ``outputs[0]`` is the first field
that is set (``loss`` when labels were given, else ``logits``), as in transformers.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ModelOutput(OrderedDict):
    fields: tuple = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        unknown = set(kwargs) - set(self.fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no fields {sorted(unknown)}")
        for name in self.fields:
            value = kwargs.get(name)
            object.__setattr__(self, name, value)
            if value is not None:
                super().__setitem__(name, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in self.fields and value is not None:
            super().__setitem__(name, value)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


def _output(name: str, *fields: str) -> type:
    return type(name, (ModelOutput,), {"fields": fields, "__doc__": f"Fields: {', '.join(fields)}."})


BaseModelOutput = _output("BaseModelOutput", "last_hidden_state", "hidden_states", "attentions")
BaseModelOutputWithPooling = _output("BaseModelOutputWithPooling", "last_hidden_state", "pooler_output",
                                     "hidden_states", "attentions")
BaseModelOutputWithPast = _output("BaseModelOutputWithPast", "last_hidden_state", "past_key_values",
                                  "hidden_states", "attentions")
SequenceClassifierOutput = _output("SequenceClassifierOutput", "loss", "logits", "hidden_states", "attentions")
TokenClassifierOutput = _output("TokenClassifierOutput", "loss", "logits", "hidden_states", "attentions")
MaskedLMOutput = _output("MaskedLMOutput", "loss", "logits", "hidden_states", "attentions")
CausalLMOutputWithPast = _output("CausalLMOutputWithPast", "loss", "logits", "past_key_values", "hidden_states",
                                 "attentions")
