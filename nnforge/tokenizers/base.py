"""``PreTrainedTokenizer``: a Hugging Face ``tokenizers.Tokenizer`` with the transformers calling convention.

The Rust ``tokenizers`` library does the work (normalisation, pre-tokenisation, the WordPiece/BPE model,
special-token templates, padding, truncation); this class holds the special tokens and settings that
transformers keeps in ``tokenizer_config.json`` and sets padding/truncation on the backend for each call,
exactly as transformers' fast tokenizers do, so ids, masks and token types are the same.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SPECIAL_TOKEN_NAMES",
    "BatchEncoding",
    "PreTrainedTokenizer",
    "PreTrainedTokenizerFast",
    "require_tokenizers",
]

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_NO_LIMIT = int(1e30)  # transformers' VERY_LARGE_INTEGER: "no model_max_length known"


def require_tokenizers():
    """The ``tokenizers`` module, or an ImportError saying which extra to install."""
    try:
        import tokenizers
    except ImportError as e:
        raise ImportError("nnforge tokenizers need the `tokenizers` package: pip install nnforge[hf]") from e
    return tokenizers


class BatchEncoding(dict):
    """A dict of model inputs (``input_ids``, ``attention_mask``, ``token_type_ids``...) whose keys are also
    attributes; ``encodings`` keeps the backend's ``tokenizers.Encoding`` objects (offsets, word ids)."""

    def __init__(self, data: dict, encodings: list | None = None):
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key {name!r} (keys: {list(self)})") from None

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word index of each token of sequence ``batch_index`` (None for special and padding tokens)."""
        if not self.encodings:
            raise ValueError("word_ids() needs the tokenizer's encodings (BatchEncoding built by a tokenizer)")
        return self.encodings[batch_index].word_ids


def _token_content(value) -> str | None:
    """A special token from tokenizer_config.json: a string or a serialised AddedToken ``{"content": ...}``."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class PreTrainedTokenizer:
    """A tokenizer with transformers' API over a ``tokenizers.Tokenizer`` backend.

    Build one with ``nnforge.tokenizers.AutoTokenizer.from_pretrained(path_or_name)``.

    Example:
        >>> tok = AutoTokenizer.from_pretrained("all-MiniLM-L6-v2")              # doctest: +SKIP
        >>> enc = tok(["a cat", "a dog sat"], padding=True, return_tensors="np")  # doctest: +SKIP
        >>> enc["input_ids"].shape, enc["attention_mask"].sum(1)                 # doctest: +SKIP
        ((2, 5), array([4, 5]))
    """

    def __init__(self, backend, *, model_max_length: int | None = None, padding_side: str = "right",
                 truncation_side: str = "right", chat_template: str | None = None,
                 model_input_names: Sequence[str] = ("input_ids", "attention_mask"),
                 additional_special_tokens: Iterable[str] = (), name_or_path: str = "",
                 extra_config: dict | None = None, **special_tokens: str | None):
        unknown = set(special_tokens) - set(SPECIAL_TOKEN_NAMES)
        if unknown:
            raise TypeError(f"PreTrainedTokenizer: unknown arguments {sorted(unknown)}")
        self._tokenizer = backend
        backend.no_truncation()  # tokenizer.json may carry a fixed setting; each call sets its own
        backend.no_padding()
        self.model_max_length = model_max_length if model_max_length is not None else _NO_LIMIT
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.chat_template = chat_template
        self.model_input_names = list(model_input_names)
        self.additional_special_tokens = list(additional_special_tokens)
        self.name_or_path = name_or_path
        self.extra_config = dict(extra_config or {})
        for name in SPECIAL_TOKEN_NAMES:
            setattr(self, name, _token_content(special_tokens.get(name)))
        self.pad_token_type_id = 0

    # -- special tokens and vocabulary ----------------------------------------------------------------------
    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    bos_token_id = property(lambda self: self._id(self.bos_token))
    eos_token_id = property(lambda self: self._id(self.eos_token))
    unk_token_id = property(lambda self: self._id(self.unk_token))
    sep_token_id = property(lambda self: self._id(self.sep_token))
    pad_token_id = property(lambda self: self._id(self.pad_token))
    cls_token_id = property(lambda self: self._id(self.cls_token))
    mask_token_id = property(lambda self: self._id(self.mask_token))

    @property
    def backend_tokenizer(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tokenizer

    @property
    def special_tokens_map(self) -> dict[str, str]:
        out = {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES if getattr(self, name) is not None}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        decoder = self._tokenizer.get_added_tokens_decoder()
        return sorted(i for i, t in decoder.items() if t.special)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary (without added tokens), as transformers defines it."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, (int, np.integer)):
            return self._tokenizer.id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in _as_id_list(ids) if int(i) not in special]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            found = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def tokenize(self, text: str, text_pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        return self._tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens).tokens

    # -- encoding -------------------------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, *, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, return_tensors: str | None = None, add_special_tokens: bool = True,
                 return_attention_mask: bool | None = None, return_token_type_ids: bool | None = None,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                 return_length: bool = False, pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 is_split_into_words: bool = False) -> BatchEncoding:
        """Tokenize one text or a batch (optionally with ``text_pair``) into a ``BatchEncoding``.

        Args:
            padding: False/"do_not_pad", True/"longest" (to the longest in the batch) or "max_length".
            truncation: True/"longest_first", "only_first", "only_second", False/"do_not_truncate"; None (default)
                truncates only when ``max_length`` is given without padding, like transformers.
            max_length: length limit for truncation and "max_length" padding (default: ``model_max_length``).
            return_tensors: None (lists), "np" (int64 arrays) or "nf" (nnforge tensors); needs equal lengths.
            return_token_type_ids: default True for tokenizers whose model takes token types (BERT).
        Returns:
            ``BatchEncoding`` with ``input_ids``, ``token_type_ids`` (when returned) and ``attention_mask``; a
            single text gives flat lists, a batch lists of lists (arrays of shape (B, T) with ``return_tensors``).
        """
        batched = isinstance(text, (list, tuple)) and not (is_split_into_words and text and isinstance(text[0], str))
        texts = list(text) if batched else [text]
        if text_pair is not None:
            pairs = list(text_pair) if batched else [text_pair]
            if len(pairs) != len(texts):
                raise ValueError(f"tokenizer: got {len(texts)} texts but {len(pairs)} text_pair entries")
            inputs = list(zip(texts, pairs))
        else:
            inputs = texts
        for t in texts:
            if not isinstance(t, (str, list, tuple)):
                raise TypeError(f"tokenizer: text must be a str or a list of str, got {type(t).__name__}")

        strategy = self._truncation_strategy(truncation, max_length, padding)
        if padding is True:
            padding = "longest"
        elif padding is False or padding is None:
            padding = "do_not_pad"
        if padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"tokenizer: padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                             f"got {padding!r}")
        limit = max_length if max_length is not None else self.model_max_length
        backend = self._tokenizer
        try:
            if strategy != "do_not_truncate" and limit < _NO_LIMIT:
                backend.enable_truncation(limit, stride=0, strategy=strategy, direction=self.truncation_side)
            if padding != "do_not_pad":
                if self.pad_token is None or self.pad_token_id is None:
                    raise ValueError("tokenizer: asked to pad but the tokenizer has no padding token; set "
                                     "tokenizer.pad_token = tokenizer.eos_token (or another token) first")
                if padding == "max_length" and limit >= _NO_LIMIT:
                    raise ValueError("tokenizer: padding='max_length' needs max_length (the tokenizer has no "
                                     "model_max_length)")
                backend.enable_padding(direction=padding_side or self.padding_side, pad_id=self.pad_token_id,
                                       pad_type_id=self.pad_token_type_id, pad_token=self.pad_token,
                                       length=limit if padding == "max_length" else None,
                                       pad_to_multiple_of=pad_to_multiple_of)
            try:
                encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                 is_pretokenized=is_split_into_words)
            except Exception as e:  # the Rust library raises a bare Exception
                raise ValueError(f"tokenizer: {e} (truncation={strategy!r}, max_length={limit})") from None
        finally:
            backend.no_truncation()
            backend.no_padding()

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        data: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            data["length"] = [len(e.ids) for e in encodings]
        if not batched:
            data = {k: v[0] for k, v in data.items()}
        if return_tensors is not None:
            data = {k: _to_tensor(k, v, return_tensors, batched) for k, v in data.items()}
        return BatchEncoding(data, encodings)

    @staticmethod
    def _truncation_strategy(truncation, max_length, padding) -> str:
        if truncation is None:  # transformers: max_length alone (without padding to it) means truncate
            truncation = max_length is not None and padding in (False, None, "do_not_pad", True, "longest")
        if truncation is True:
            return "longest_first"
        if truncation is False:
            return "do_not_truncate"
        if truncation not in ("longest_first", "only_first", "only_second", "do_not_truncate"):
            raise ValueError(f"tokenizer: truncation must be True, False, 'longest_first', 'only_first', "
                             f"'only_second' or 'do_not_truncate', got {truncation!r}")
        return truncation

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """The ids of one text (or pair), as a flat list (or array/tensor with ``return_tensors``)."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # -- decoding -------------------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None) -> str:
        """Text of one sequence of ids (a list, 1-D array or tensor)."""
        text = self._tokenizer.decode(_as_id_list(ids), skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = bool(self.extra_config.get("clean_up_tokenization_spaces", False))
        return _clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in _as_rows(sequences)]

    # -- chat -----------------------------------------------------------------------------------------------
    def apply_chat_template(self, conversation, add_generation_prompt: bool = False, tokenize: bool = True,
                            return_tensors: str | None = None, return_dict: bool = False,
                            chat_template: str | None = None, continue_final_message: bool = False,
                            padding: bool | str = False, truncation: bool = False, max_length: int | None = None,
                            **template_kwargs):
        """Render ``conversation`` (``[{"role": ..., "content": ...}, ...]`` or a batch of them) with the chat
        template, as transformers does, and tokenize it (without adding special tokens again).

        Returns the rendered string(s) when ``tokenize=False``; else the ids (a list, or an array/tensor of shape
        (B, T) with ``return_tensors``), or the full ``BatchEncoding`` with ``return_dict=True``. Deviation:
        transformers 5 defaults to ``return_dict=True``; here the default returns the ids (transformers 4).
        """
        from .chat import render_chat
        template = chat_template or self.chat_template
        if template is None:
            raise ValueError(f"tokenizer {self.name_or_path!r} has no chat template (none in tokenizer_config.json "
                             f"or the GGUF metadata); pass chat_template=")
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        rendered = [render_chat(template, conv, add_generation_prompt=add_generation_prompt,
                                continue_final_message=continue_final_message,
                                **{**self.special_tokens_map, **template_kwargs}) for conv in conversations]
        if not tokenize:
            return rendered if batched else rendered[0]
        enc = self(rendered if batched else rendered[0], add_special_tokens=False, return_tensors=return_tensors,
                   padding=padding, truncation=truncation, max_length=max_length)
        return enc if return_dict else enc["input_ids"]

    # -- saving ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (loadable by transformers and by nnforge)."""
        from ..io.atomic import atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "tokenizer.json", self._tokenizer.to_str())
        config = dict(self.extra_config)
        config.update(self.special_tokens_map)
        config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side, model_input_names=self.model_input_names)
        config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False))
        return directory

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"special_tokens={self.special_tokens_map})")


PreTrainedTokenizerFast = PreTrainedTokenizer  # transformers' name for the same thing


def _as_id_list(ids) -> list[int]:
    if hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):
        ids = ids.numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"decode: expected one sequence of ids (1-D), got shape {arr.shape}; use batch_decode")
    return [int(i) for i in arr.tolist()]


def _as_rows(sequences) -> list:
    if hasattr(sequences, "numpy") and not isinstance(sequences, np.ndarray):
        sequences = sequences.numpy()
    return list(sequences)


def _to_tensor(key: str, value: list, kind: str, batched: bool):
    rows = value if batched else [value]
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"tokenizer: cannot make one {kind!r} tensor of '{key}' from sequences of different lengths "
                         f"{sorted(lengths)}; pass padding=True (and truncation=True if needed)")
    if key == "offset_mapping":
        arr = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1, 2)
    else:
        arr = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    if kind == "np":
        return arr
    if kind == "nf":
        from ..creation import from_numpy
        return from_numpy(arr)
    hint = " (PyTorch's; nnforge returns 'nf' tensors)" if kind == "pt" else ""
    raise ValueError(f"tokenizer: return_tensors must be None, 'np' or 'nf', got {kind!r}{hint}")


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop the space before punctuation and contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
