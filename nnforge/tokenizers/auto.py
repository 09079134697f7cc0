"""``AutoTokenizer.from_pretrained``: a tokenizer from a model folder, a GGUF file or a known model name.

A folder is read like transformers reads it: ``tokenizer.json`` (the full pipeline) plus
``tokenizer_config.json`` (special tokens, ``model_max_length``, ``padding_side``, chat template; also
``special_tokens_map.json`` and ``chat_template.jinja``); without ``tokenizer.json``, a BERT ``vocab.txt``
is turned into the same WordPiece pipeline transformers' ``BertTokenizerFast`` converts it to.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import SPECIAL_TOKEN_NAMES, PreTrainedTokenizer, _token_content, require_tokenizers

__all__ = ["AutoTokenizer"]

# tokenizer classes whose models take token_type_ids (everything else: input_ids + attention_mask)
_TOKEN_TYPE_CLASSES = ("Bert", "DistilBert", "Electra", "MPNet", "Funnel", "Layout", "XLNet", "Albert")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _chat_template(directory: Path, config: dict) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template") or _read_json(directory / "chat_template.json").get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template


def _wordpiece_from_vocab(vocab_path: Path, config: dict, special: dict):
    """transformers' BertConverter: BERT normalisation and pre-tokenisation, WordPiece, [CLS] A [SEP] B [SEP]."""
    tk = require_tokenizers()
    lines = vocab_path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        vocab.setdefault(token.rstrip("\r"), i)
    cls, sep = special["cls_token"], special["sep_token"]
    for name, tok in (("unk_token", special["unk_token"]), ("cls_token", cls), ("sep_token", sep)):
        if tok not in vocab:
            raise ValueError(f"{vocab_path}: {name} {tok!r} is not in the vocabulary")
    backend = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    backend.normalizer = tk.normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    backend.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    backend.post_processor = tk.processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    backend.decoder = tk.decoders.WordPiece(prefix="##")
    backend.add_special_tokens([tk.AddedToken(t, normalized=False, special=True)
                                for t in dict.fromkeys(v for v in special.values() if v is not None)
                                if t in vocab])
    return backend


def _from_directory(directory: Path, overrides: dict) -> PreTrainedTokenizer:
    tk = require_tokenizers()
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    special = {name: _token_content(config.get(name, special_map.get(name))) for name in SPECIAL_TOKEN_NAMES}
    tokenizer_class = str(config.get("tokenizer_class") or "")
    if (directory / "tokenizer.json").is_file():
        backend = tk.Tokenizer.from_file(str(directory / "tokenizer.json"))
        is_wordpiece = type(backend.model).__name__ == "WordPiece"
    elif (directory / "vocab.txt").is_file():
        defaults = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                    "mask_token": "[MASK]"}
        special = {k: (v if v is not None else defaults.get(k)) for k, v in special.items()}
        backend = _wordpiece_from_vocab(directory / "vocab.txt", config, special)
        is_wordpiece = True
    else:
        raise FileNotFoundError(f"{directory}: no tokenizer.json or vocab.txt (is this a model folder?)")
    extra = config.get("additional_special_tokens", special_map.get("additional_special_tokens")) or []
    input_names = config.get("model_input_names")
    if input_names is None:
        takes_types = is_wordpiece or tokenizer_class.startswith(_TOKEN_TYPE_CLASSES)
        input_names = ["input_ids", "token_type_ids", "attention_mask"] if takes_types else \
            ["input_ids", "attention_mask"]
    kept = {k: v for k, v in config.items()
            if k in ("tokenizer_class", "clean_up_tokenization_spaces", "do_lower_case", "add_bos_token",
                     "add_eos_token")}
    settings: dict[str, Any] = dict(
        model_max_length=config.get("model_max_length"), padding_side=config.get("padding_side", "right"),
        truncation_side=config.get("truncation_side", "right"), chat_template=_chat_template(directory, config),
        model_input_names=input_names, additional_special_tokens=[_token_content(t) for t in extra],
        name_or_path=str(directory), extra_config=kept, **special)
    settings.update(overrides)
    return PreTrainedTokenizer(backend, **settings)


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(path_or_name)`` like transformers (backed by the ``tokenizers`` library).

    Accepts a model folder (``tokenizer.json`` and/or ``vocab.txt``), a ``.gguf`` file (its embedded
    vocabulary), or a known model name from :mod:`nnforge.hub` (``"all-MiniLM-L6-v2"``,
    ``"smollm2-135m-instruct"``). Keyword arguments override settings (``padding_side="left"``,
    ``model_max_length=128``, special tokens such as ``pad_token="<|im_end|>"``).

    Example:
        >>> tok = AutoTokenizer.from_pretrained("smollm2-135m-instruct", padding_side="left")   # doctest: +SKIP
        >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is built with AutoTokenizer.from_pretrained(path_or_name)")

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, *, gguf_file: str | None = None,
                        **overrides: Any) -> PreTrainedTokenizer:
        from ..hub import resolve_model_path

        path = resolve_model_path(path_or_name)
        if gguf_file is not None:
            path = path / gguf_file if path.is_dir() else path
        if path.is_file():
            if path.suffix != ".gguf":
                raise ValueError(f"{path}: a tokenizer is read from a model folder or a .gguf file")
            from .gguf_vocab import tokenizer_from_gguf
            return tokenizer_from_gguf(path, **overrides)
        return _from_directory(path, overrides)
