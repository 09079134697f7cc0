"""Pretrained architectures with Hugging Face class and weight names (one readable file per architecture)."""
from .auto import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification,
                   AutoModelForTokenClassification)
from ..tokenizers import AutoTokenizer
from .bert import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                   BertModel)
from .configuration import PretrainedConfig
from .gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from .llama import LlamaConfig, LlamaForCausalLM, LlamaModel
from .modeling_utils import PreTrainedModel
from .outputs import ModelOutput

__all__ = ["AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
           "AutoModelForTokenClassification", "AutoTokenizer", "BertConfig", "BertForMaskedLM", "BertForSequenceClassification",
           "BertForTokenClassification", "BertModel", "GPT2Config", "GPT2LMHeadModel", "GPT2Model", "LlamaConfig", "LlamaForCausalLM",
           "LlamaModel", "PretrainedConfig", "PreTrainedModel", "ModelOutput"]
