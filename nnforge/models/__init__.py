"""Pretrained architectures with Hugging Face class and weight names (one readable file per architecture)."""
from .auto import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification,
                   AutoModelForTokenClassification)
from ..tokenizers import AutoTokenizer
from .configuration import PretrainedConfig
from .modeling_utils import PreTrainedModel
from .outputs import ModelOutput

__all__ = ["AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
           "AutoModelForTokenClassification", "AutoTokenizer", "PretrainedConfig", "PreTrainedModel", "ModelOutput"]
