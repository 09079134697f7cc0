"""Build a tokenizer from the vocabulary embedded in a GGUF file (llama.cpp metadata keys).

Supported: ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE; SmolLM2, Llama 3, Qwen 2, GPT-2...): the
vocabulary ``tokenizer.ggml.tokens``, the merges ``tokenizer.ggml.merges``, control tokens (token type 3) as
special tokens and user-defined ones (type 4) as added tokens, bos/eos/unk/pad from their ids, the chat
template from ``tokenizer.chat_template``. The pre-tokenizer follows ``tokenizer.ggml.pre``: "smollm" is
SmolLM2's own (digits split one by one, then GPT-2's byte-level regex), the Llama 3 family uses its regex,
anything else GPT-2's. This is what transformers builds from the same file.
"""
from __future__ import annotations

import functools
import os

from .base import PreTrainedTokenizer, require_tokenizers

__all__ = ["bytes_to_unicode", "tokenizer_from_gguf"]

_CONTROL, _USER_DEFINED = 3, 4
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_NAMES = {"llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx", "pixtral"}


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE vocabularies are spelled in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _pre_tokenizer(pre: str | None):
    tk = require_tokenizers()
    pt = tk.pre_tokenizers
    if pre == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in _LLAMA3_NAMES:
        return pt.Sequence([pt.Split(tk.Regex(_LLAMA3_SPLIT), behavior="isolated"),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    return pt.ByteLevel(add_prefix_space=False, use_regex=True)


def tokenizer_from_gguf(path: str | os.PathLike, **overrides) -> PreTrainedTokenizer:
    """The tokenizer described by GGUF file ``path``'s metadata; ``overrides`` set attributes such as
    ``padding_side``."""
    from ..io.gguf import GGUFReader

    tk = require_tokenizers()
    with GGUFReader(path) as reader:
        meta = reader.metadata
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise NotImplementedError(f"{path}: GGUF tokenizer.ggml.model = {kind!r}; nnforge builds only byte-level "
                                  f"BPE ('gpt2') vocabularies from GGUF files")
    tokens = meta.get("tokenizer.ggml.tokens")
    merges = meta.get("tokenizer.ggml.merges")
    if not isinstance(tokens, list) or not isinstance(merges, list):
        raise ValueError(f"{path}: GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
    types = list(meta.get("tokenizer.ggml.token_type", ()))

    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {}
    for i, t in enumerate(tokens):  # tokens outside the byte alphabet (rare control tokens) are respelled
        vocab[t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))] = i
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep:
            raise ValueError(f"{path}: malformed merge {m!r} in tokenizer.ggml.merges")
        pairs.append((a, b))
    backend = tk.Tokenizer(tk.models.BPE(vocab, pairs, dropout=None, continuing_subword_prefix="",
                                         end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre"))
    backend.decoder = tk.decoders.ByteLevel()
    control = [tokens[i] for i, ty in enumerate(types) if ty == _CONTROL and set(tokens[i]) <= alphabet]
    backend.add_special_tokens([tk.AddedToken(t, normalized=False, special=True) for t in control])
    user = [tokens[i] for i, ty in enumerate(types) if ty == _USER_DEFINED]
    if user:
        backend.add_tokens([tk.AddedToken(t, normalized=False, special=False) for t in user])

    def token(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}")
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    special = {"bos_token": token("bos_token_id"), "eos_token": token("eos_token_id"),
               "unk_token": token("unknown_token_id"), "pad_token": token("padding_token_id")}
    add_bos, add_eos = bool(meta.get("tokenizer.ggml.add_bos_token")), bool(meta.get("tokenizer.ggml.add_eos_token"))
    if (add_bos and special["bos_token"]) or (add_eos and special["eos_token"]):
        single = ([f"{special['bos_token']}:0"] if add_bos else []) + ["$A:0"] + \
                 ([f"{special['eos_token']}:0"] if add_eos else [])
        pair = single + [s.replace("$A", "$B").replace(":0", ":1") for s in single]
        used = {special[n] for n, on in (("bos_token", add_bos), ("eos_token", add_eos)) if on}
        backend.post_processor = tk.processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t, vocab[t]) for t in used])
    else:
        backend.post_processor = tk.processors.ByteLevel(trim_offsets=False)
    settings = dict(chat_template=meta.get("tokenizer.chat_template"), name_or_path=os.fspath(path),
                    additional_special_tokens=[t for t in control if t not in special.values()],
                    extra_config={"add_bos_token": add_bos, "add_eos_token": add_eos}, **special)
    settings.update(overrides)
    return PreTrainedTokenizer(backend, **settings)
