"""What the causal LMs (``GPT2LMHeadModel``, ``LlamaForCausalLM``) share: generation, the KV cache, the
attention mask, the LM loss and activations by transformers' names.

- ``KVCache``: per-layer key/value buffers (B, H, capacity, D) preallocated for the whole generation, so a
  decoding step writes one position in place and attends to a view (no re-concatenation of the cache).
- ``attention_bias``: the additive causal + padding mask a forward pass with a cache needs.
- ``GenerationMixin.generate``: greedy decoding or sampling with Hugging Face's logits processors, in HF's
  order (repetition penalty, then temperature, top-k, top-p when sampling), stopping per sequence at EOS.
"""
from __future__ import annotations

import contextlib
from typing import Any

from ..autograd.grad_mode import GRAD_ENABLED, no_grad
from ..nn.modules.linear import Linear
from ..ops.activation import gelu, silu
from ..ops.join import cat
from ..ops.loss import cross_entropy
from ..ops.math import relu
from ..random import Generator, _rng
from ..tensor import Tensor

__all__ = [
    "GenerationMixin",
    "KVCache",
    "activation",
    "attention_bias",
    "causal_lm_loss",
    "lm_logits",
    "process_logits",
    "sample",
]

_SINGLE_THREAD_MAX_ROWS = 8  # decoding steps with at most this many sequences run BLAS on one thread

ACT2FN = {"gelu_new": lambda x: gelu(x, approximate="tanh"), "gelu_pytorch_tanh": lambda x: gelu(x, "tanh"),
          "gelu": gelu, "relu": relu, "silu": silu, "swish": silu}


def activation(name: str):
    """The function transformers' ``ACT2FN[name]`` computes."""
    if name not in ACT2FN:
        raise ValueError(f"activation '{name}' is not supported (supported: {', '.join(sorted(ACT2FN))})")
    return ACT2FN[name]


def causal_lm_loss(logits: Tensor, labels: Any) -> Tensor:
    """Mean next-token cross entropy: position t predicts labels[t + 1]; label -100 is ignored (transformers)."""
    xp = logits._backend.xp
    lab = labels.data if isinstance(labels, Tensor) else xp.asarray(labels)
    if tuple(lab.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"causal LM loss: labels of shape {tuple(lab.shape)} must match the logits' (batch, seq) "
                         f"{tuple(logits.shape[:2])} (pass logits_to_keep=0 with labels)")
    shifted = xp.full(lab.shape, -100, dtype=xp.int64)
    shifted[:, :-1] = lab[:, 1:]
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), Tensor._make(shifted.reshape(-1), logits._device),
                         ignore_index=-100)


def lm_logits(lm_head: Linear, hidden: Tensor, logits_to_keep: int) -> Tensor:
    """The head on the last ``logits_to_keep`` positions only (0 = all): generation needs just the last."""
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:, :]
    return lm_head(hidden)


class KVCache:
    """Keys and values of the positions seen so far, per layer: ``update`` appends and returns the whole.

    Buffers are allocated once with room for ``max_length`` positions (``generate`` passes prompt + new
    tokens) and doubled if a forward pass goes beyond. Returned tensors are views of the buffers; while
    autograd records (a cache used in training), the new keys are concatenated instead so they keep their
    gradient.
    """

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length
        self.keys: list = []
        self.values: list = []
        self.lengths: list[int] = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.lengths[layer_idx] if layer_idx < len(self.lengths) else 0

    def __len__(self) -> int:
        return len(self.lengths)

    def update(self, key: Tensor, value: Tensor, layer_idx: int) -> tuple[Tensor, Tensor]:
        """Append ``key``/``value`` (B, H, L, D) for layer ``layer_idx``; return all (B, H, past + L, D)."""
        xp = key._backend.xp
        if layer_idx == len(self.lengths):
            self.keys.append(None)
            self.values.append(None)
            self.lengths.append(0)
        past, new = self.lengths[layer_idx], key.shape[-2]
        end = past + new
        kb, vb = self.keys[layer_idx], self.values[layer_idx]
        if kb is not None and kb.shape[:-2] != key.shape[:-2]:
            raise RuntimeError(f"KVCache: layer {layer_idx} holds keys of shape {kb.shape[:-2]} + (seq, "
                               f"{kb.shape[-1]}) but got {tuple(key.shape)}")
        if kb is None or end > kb.shape[-2]:
            cap = max(end, self.max_length or 0, 2 * (kb.shape[-2] if kb is not None else 0))
            nk = xp.empty(key.shape[:-2] + (cap, key.shape[-1]), dtype=key.dtype)
            nv = xp.empty(value.shape[:-2] + (cap, value.shape[-1]), dtype=value.dtype)
            if past:
                nk[..., :past, :] = kb[..., :past, :]
                nv[..., :past, :] = vb[..., :past, :]
            self.keys[layer_idx], self.values[layer_idx] = kb, vb = nk, nv
        kb[..., past:end, :] = key.data
        vb[..., past:end, :] = value.data
        self.lengths[layer_idx] = end
        if past == 0:
            return key, value
        if GRAD_ENABLED[0] and (key.requires_grad or value.requires_grad):
            return (cat([Tensor._make(kb[..., :past, :], key._device), key], dim=-2),
                    cat([Tensor._make(vb[..., :past, :], value._device), value], dim=-2))
        return Tensor._make(kb[..., :end, :], key._device), Tensor._make(vb[..., :end, :], value._device)


def attention_bias(attention_mask: Tensor | None, batch: int, length: int, past: int, like: Tensor) -> Tensor | None:
    """Additive mask (B or 1, 1, L, past + L) for queries at positions past..past+L-1: causal (a query sees
    keys up to its own position) and, with ``attention_mask`` (B, past + L) of 1/0, no padded keys.
    None when nothing is masked (one new token, no padding)."""
    xp = like._backend.xp
    total = past + length
    keep = None
    if attention_mask is not None:
        am = attention_mask.data if isinstance(attention_mask, Tensor) else xp.asarray(attention_mask)
        if am.shape != (batch, total):
            raise ValueError(f"attention_mask of shape {tuple(am.shape)} does not match the batch ({batch}) and "
                             f"the past + new positions ({past} + {length} = {total}); expected ({batch}, {total})")
        if not am.all():
            keep = (am != 0)[:, None, None, :]
    if length > 1:
        causal = xp.arange(total)[None, :] <= xp.arange(past, total)[:, None]  # (L, S)
        keep = causal if keep is None else keep & causal
    if keep is None:
        return None
    dt = like.dtype.type
    return Tensor._make(xp.where(keep, dt(0), dt(-xp.inf)), like._device)


def _as_ids(x: Any, xp: Any, name: str) -> Any:
    arr = x.data if isinstance(x, Tensor) else xp.asarray(x)
    if arr.ndim != 2 or arr.dtype.kind not in "iub":
        raise ValueError(f"generate: {name} must be a 2-D integer tensor (batch, seq), got shape "
                         f"{tuple(arr.shape)} and dtype {arr.dtype}")
    return arr.astype(xp.int64)


def _id_list(x: Any) -> list[int]:
    if x is None:
        return []
    return [int(i) for i in x] if isinstance(x, (list, tuple)) else [int(x)]


def _softmax(xp: Any, s: Any) -> Any:
    p = s - s.max(axis=-1, keepdims=True)
    xp.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    return p


class GenerationMixin:
    """``generate`` for models whose forward takes ``input_ids, attention_mask, position_ids,
    past_key_values, use_cache, logits_to_keep`` and returns ``.logits`` and ``.past_key_values``."""

    def generate(self, input_ids: Any, attention_mask: Any = None, max_new_tokens: int = 20,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = 50, top_p: float = 1.0,
                 repetition_penalty: float = 1.0, eos_token_id: int | list | None = None,
                 pad_token_id: int | None = None, generator: Generator | None = None,
                 streamer: Any = None) -> Tensor:
        """Continue ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + new) int64.

        ``streamer`` (transformers' ``BaseStreamer`` protocol): ``put(prompt_ids)`` once, ``put(new_ids)`` (B,)
        after every step, ``end()`` when done — e.g. to print tokens as they are generated.

        Greedy (``do_sample=False``) picks the most likely token after the repetition penalty; sampling applies
        temperature, top-k (HF's default 50; 0 or None disables it) and nucleus top-p, then draws from
        ``generator`` (the global one by default). A sequence that emits ``eos_token_id`` (default: the
        config's) is finished: it gets ``pad_token_id`` (default: the EOS id) afterwards, and generation stops
        when every sequence is finished. Left-padded batches need ``attention_mask`` (1 = token, 0 = pad);
        positions then count real tokens only, as in transformers.

        Example:
            >>> out = model.generate(nf.tensor([[1, 2, 3]]), max_new_tokens=5)   # doctest: +SKIP
            >>> out.shape                                                       # doctest: +SKIP
            (1, 8)
        """
        if max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample:
            if not temperature > 0:
                raise ValueError(f"generate: temperature must be > 0 when sampling, got {temperature}")
            if not 0 < top_p <= 1:
                raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
            if top_k is not None and top_k < 0:
                raise ValueError(f"generate: top_k must be >= 0, got {top_k}")
        if not repetition_penalty > 0:
            raise ValueError(f"generate: repetition_penalty must be > 0, got {repetition_penalty}")
        with no_grad():
            return self._generate(input_ids, attention_mask, max_new_tokens, do_sample, float(temperature),
                                  int(top_k or 0), float(top_p), float(repetition_penalty), eos_token_id,
                                  pad_token_id, generator, streamer)

    def _generate(self, input_ids, attention_mask, max_new_tokens, do_sample, temperature, top_k, top_p,
                  repetition_penalty, eos_token_id, pad_token_id, generator, streamer=None) -> Tensor:
        device = next(iter(self.parameters()))._device
        xp = device.backend.xp
        ids = _as_ids(input_ids, xp, "input_ids")
        batch, prompt = ids.shape
        mask = xp.ones((batch, prompt + max_new_tokens), dtype=xp.int64)
        if attention_mask is not None:
            am = _as_ids(attention_mask, xp, "attention_mask")
            if am.shape != ids.shape:
                raise ValueError(f"generate: attention_mask of shape {am.shape} must match input_ids {ids.shape}")
            mask[:, :prompt] = am
        padded = not mask[:, :prompt].all()
        eos = _id_list(eos_token_id if eos_token_id is not None else self.config.get("eos_token_id"))
        if pad_token_id is None:
            pad_token_id = self.config.get("pad_token_id")
            if pad_token_id is None and eos:
                pad_token_id = eos[0]
        eos_arr = xp.asarray(eos, dtype=xp.int64)

        out = xp.empty((batch, prompt + max_new_tokens), dtype=xp.int64)
        out[:, :prompt] = ids
        positions = mask[:, :prompt].cumsum(-1) - 1
        positions[mask[:, :prompt] == 0] = 0
        unfinished = xp.ones(batch, dtype=bool)
        cache = KVCache(max_length=prompt + max_new_tokens)
        cur, n = ids, prompt
        rng = _rng(generator) if do_sample else None
        if streamer is not None:
            streamer.put(ids)
        for step in range(max_new_tokens):
            # decoding steps multiply a few rows by each weight matrix: memory-bound GEMVs that BLAS threads
            # slow down (hand-offs cost more than they save; on a busy machine, 100x), so run them on one thread
            few_rows = step > 0 and batch <= _SINGLE_THREAD_MAX_ROWS
            with device.backend.blas_threads(1) if few_rows else contextlib.nullcontext():
                result = self(Tensor._make(cur, device), attention_mask=Tensor._make(mask[:, :n], device) if padded
                              else None, position_ids=Tensor._make(positions, device), past_key_values=cache,
                              use_cache=True, logits_to_keep=1)
            cache = result.past_key_values
            scores = result.logits.data[:, -1, :].astype(xp.float32)  # (B, V), our own copy
            scores = process_logits(scores, out[:, :n], repetition_penalty, do_sample, temperature, top_k, top_p,
                                    xp)
            nxt = sample(scores, rng, xp) if do_sample else scores.argmax(axis=-1)
            if eos:
                nxt = xp.where(unfinished, nxt, pad_token_id)
            out[:, n] = nxt
            n += 1
            if streamer is not None:
                streamer.put(nxt)
            if eos:
                unfinished &= ~xp.isin(nxt, eos_arr)
                if not unfinished.any():
                    break
            cur = nxt[:, None]
            positions = positions[:, -1:] + 1
        if streamer is not None:
            streamer.end()
        return Tensor._make(out[:, :n].copy(), device)


def process_logits(scores: Any, ids: Any, repetition_penalty: float, do_sample: bool, temperature: float,
                   top_k: int, top_p: float, xp: Any) -> Any:
    """transformers' logits processors in its order, in place on ``scores`` (B, V) float32: repetition penalty
    over the tokens in ``ids`` (B, T), then, when sampling, temperature, top-k (ties with the k-th kept) and
    top-p (smallest set of tokens with probability > top_p, at least one). Removed tokens get -inf."""
    if repetition_penalty != 1.0:
        seen = xp.take_along_axis(scores, ids, axis=1)
        seen = xp.where(seen < 0, seen * xp.float32(repetition_penalty), seen / xp.float32(repetition_penalty))
        xp.put_along_axis(scores, ids, seen, axis=1)
    if not do_sample:
        return scores
    if temperature != 1.0:
        scores /= xp.float32(temperature)
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = -xp.partition(-scores, top_k - 1, axis=-1)[:, top_k - 1:top_k]
        scores[scores < kth] = -xp.inf
    if top_p < 1.0:
        order = xp.argsort(scores, axis=-1, kind="stable")  # ascending, like HF
        cum = _softmax(xp, xp.take_along_axis(scores, order, axis=-1)).cumsum(axis=-1)
        remove = cum <= (1 - top_p)
        remove[:, -1] = False  # keep at least one token
        drop = xp.empty_like(remove)
        xp.put_along_axis(drop, order, remove, axis=-1)
        scores[drop] = -xp.inf
    return scores


def sample(scores: Any, rng: Any, xp: Any) -> Any:
    """One token per row drawn from softmax(scores) (B, V) with the NumPy-style generator ``rng``; tokens whose
    score is -inf are never drawn."""
    probs = _softmax(xp, scores).astype(xp.float64)
    cdf = probs.cumsum(axis=-1)
    idx = (cdf <= rng.random((scores.shape[0], 1)) * cdf[:, -1:]).sum(axis=-1)
    # rounding at the top end must not pick past the last token with non-zero probability
    last = scores.shape[-1] - 1 - (probs[:, ::-1] > 0).argmax(axis=-1)
    return xp.minimum(idx, last)
