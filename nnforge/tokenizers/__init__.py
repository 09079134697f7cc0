"""Tokenizers with transformers' API, backed by the Hugging Face ``tokenizers`` library (``pip install nnforge[hf]``).

``AutoTokenizer.from_pretrained`` reads a model folder (``tokenizer.json`` / ``vocab.txt`` +
``tokenizer_config.json``), a GGUF file's embedded vocabulary, or a known model name (see :mod:`nnforge.hub`).
Chat templates render with ``jinja2``.
"""
from .auto import AutoTokenizer
from .base import BatchEncoding, PreTrainedTokenizer, PreTrainedTokenizerFast
from .chat import render_chat
from .gguf_vocab import tokenizer_from_gguf

__all__ = ["AutoTokenizer", "BatchEncoding", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "render_chat",
           "tokenizer_from_gguf"]
