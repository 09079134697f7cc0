"""Llama (Touvron et al. 2023) with Hugging Face's module and weight names; also SmolLM2 and other Llama-family
checkpoints, from HF directories or GGUF files.

    model.embed_tokens (vocab, d)
    model.layers.N: input_layernorm (RMSNorm) -> self_attn (q/k/v/o_proj, RoPE, grouped-query) -> +
                    post_attention_layernorm -> mlp (down_proj(silu(gate_proj(x)) * up_proj(x))) -> +
    model.norm      lm_head (tied to embed_tokens when ``tie_word_embeddings``)

HF checkpoints load with no key renames or transposes (Linear weights are (out, in) on both sides).
GGUF (llama.cpp) files: ``LlamaForCausalLM._from_gguf`` maps ``token_embd``, ``blk.N.attn_q/attn_k/attn_v/
attn_output/ffn_gate/ffn_up/ffn_down/attn_norm/ffn_norm``, ``output_norm`` and ``output`` (absent = tied) to the
names above, dequantises each tensor to float32 one at a time, and undoes llama.cpp's Q/K row permutation
(llama.cpp rotates adjacent pairs; HF's ``rotate_half`` rotates the two halves of each head).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..autograd.function import Function
from ..autograd.grad_mode import no_grad
from ..nn import init
from ..nn.modules.container import ModuleList
from ..nn.modules.linear import Linear
from ..nn.modules.module import Module
from ..nn.modules.normalization import RMSNorm
from ..nn.modules.sparse import Embedding
from ..ops.attention import scaled_dot_product_attention
from ..tensor import Tensor
from ..utils.checkpoint import checkpoint
from .configuration import PretrainedConfig
from .generation import GenerationMixin, KVCache, activation, attention_bias, causal_lm_loss, lm_logits
from .modeling_utils import PreTrainedModel, no_init_weights
from .outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

__all__ = ["LlamaConfig", "LlamaForCausalLM", "LlamaModel", "apply_rotary"]


class LlamaConfig(PretrainedConfig):
    """Llama hyper-parameters with transformers' defaults (Llama-2 7B). ``num_key_value_heads`` and
    ``head_dim`` default to ``num_attention_heads`` and ``hidden_size // num_attention_heads``. The RoPE base
    is read from ``rope_theta`` or transformers 5's ``rope_parameters`` and written to both; scaled RoPE
    variants (``rope_scaling`` / a ``rope_type`` other than "default") are not supported."""

    model_type = "llama"
    defaults: ClassVar[dict] = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
        "max_position_embeddings": 2048, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1,
        "tie_word_embeddings": False, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
        "attention_dropout": 0.0, "mlp_bias": False,
    }

    def __init__(self, **kwargs: Any) -> None:
        params = kwargs.get("rope_parameters")
        if params and "rope_theta" in params and "rope_theta" not in kwargs:
            kwargs["rope_theta"] = params["rope_theta"]
        super().__init__(**kwargs)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        rope_type = (params or {}).get("rope_type", (params or {}).get("type", "default"))
        if self.rope_scaling is not None or rope_type != "default":
            raise NotImplementedError(f"LlamaConfig: scaled RoPE is not supported (rope_scaling="
                                      f"{self.rope_scaling}, rope_parameters={params})")
        self.rope_parameters = {"rope_theta": float(self.rope_theta), "rope_type": "default"}
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"LlamaConfig: num_attention_heads {self.num_attention_heads} must be a multiple "
                             f"of num_key_value_heads {self.num_key_value_heads}")


# -- rotary position embedding ---------------------------------------------------------------------------------
class Rotary(Function):
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1) over the halves of the last dim.

    x (..., L, D); cos, sin (..., L, D) arrays (no gradient). The rotation is linear in x, so backward applies
    its transpose: dx = g * cos + rotate_half^T(g * sin), rotate_half^T(y) = cat(y2, -y1)."""
    uses_inputs = False

    def forward(self, x: Any, cos: Any, sin: Any) -> Any:
        h = x.shape[-1] // 2
        out = x * cos
        out[..., :h] -= x[..., h:] * sin[..., :h]
        out[..., h:] += x[..., :h] * sin[..., h:]
        self.saved = (cos, sin)
        return out

    def backward(self, g: Any) -> Any:
        cos, sin = self.saved
        h = g.shape[-1] // 2
        dx = g * cos
        dx[..., :h] += g[..., h:] * sin[..., h:]
        dx[..., h:] -= g[..., :h] * sin[..., :h]
        return dx, None, None


def apply_rotary(x: Tensor, cos: Any, sin: Any) -> Tensor:
    """Rotate ``x`` (..., L, D) by the angles whose cos/sin (arrays broadcastable to x) are given (HF layout)."""
    if x.shape[-1] % 2:
        raise RuntimeError(f"apply_rotary: the last dim of x {tuple(x.shape)} must be even")
    return Rotary.apply(x, cos, sin)


class LlamaRotaryEmbedding:
    """cos/sin of ``position * inv_freq`` in float32, as transformers computes them (HF ``rotate_half``
    layout: the frequencies repeat over the two halves of a head)."""

    def __init__(self, config: LlamaConfig, xp: Any) -> None:
        dim, base = config.head_dim, config.rope_theta
        self.inv_freq = 1.0 / (xp.float32(base) ** (xp.arange(0, dim, 2, dtype=xp.float32) / xp.float32(dim)))

    def __call__(self, position_ids: Any, xp: Any) -> tuple[Any, Any]:
        """position_ids (B, L) int -> cos, sin (B, 1, L, head_dim) float32."""
        freqs = position_ids[:, None, :, None].astype(xp.float32) * self.inv_freq
        emb = xp.concatenate((freqs, freqs), axis=-1)
        return xp.cos(emb), xp.sin(emb)


# -- layers -----------------------------------------------------------------------------------------------------
class LlamaRMSNorm(RMSNorm):
    """RMSNorm over the hidden size (weight initialised to ones), transformers' ``LlamaRMSNorm``."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(hidden_size, eps=eps)


class LlamaAttention(Module):
    """Multi-head attention with RoPE and grouped-query attention: ``num_key_value_heads`` key/value heads
    each serve ``num_attention_heads // num_key_value_heads`` query heads."""

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.layer_idx = layer_idx
        self.attention_dropout = config.attention_dropout
        bias = config.attention_bias
        self.q_proj = Linear(d, self.num_heads * hd, bias=bias)
        self.k_proj = Linear(d, self.num_kv_heads * hd, bias=bias)
        self.v_proj = Linear(d, self.num_kv_heads * hd, bias=bias)
        self.o_proj = Linear(self.num_heads * hd, d, bias=bias)

    def forward(self, x: Tensor, rope: tuple, bias: Tensor | None, cache: KVCache | None) -> Tensor:
        B, L, _ = x.shape
        hq, hk, hd = self.num_heads, self.num_kv_heads, self.head_dim
        cos, sin = rope
        q = apply_rotary(self.q_proj(x).reshape(B, L, hq, hd).transpose(1, 2), cos, sin)  # (B, hq, L, hd)
        k = apply_rotary(self.k_proj(x).reshape(B, L, hk, hd).transpose(1, 2), cos, sin)  # (B, hk, L, hd)
        v = self.v_proj(x).reshape(B, L, hk, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        p = self.attention_dropout if self.training else 0.0
        if hq != hk and L == 1:
            # one new token: the query heads of a group form the rows of one (G, hd) @ (hd, S) product
            y = scaled_dot_product_attention(q.reshape(B, hk, hq // hk, hd), k, v, attn_mask=bias, dropout_p=p)
        else:
            y = scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, enable_gqa=hq != hk)
        return self.o_proj(y.reshape(B, hq, L, hd).transpose(1, 2).reshape(B, L, hq * hd))


class LlamaMLP(Module):
    """SwiGLU feed-forward: ``down_proj(act(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        d, f, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = Linear(d, f, bias=bias)
        self.up_proj = Linear(d, f, bias=bias)
        self.down_proj = Linear(f, d, bias=bias)
        self.act_fn = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(Module):
    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: Tensor, rope: tuple, bias: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, bias, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# -- models -----------------------------------------------------------------------------------------------------
_GGUF_LAYER_NAMES = {  # llama.cpp name inside blk.N -> HF name inside model.layers.N
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_GGUF_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def gguf_to_hf_name(name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight`` (None for unknown tensors)."""
    stem, _, kind = name.rpartition(".")
    if stem.startswith("blk."):
        _, idx, part = stem.split(".", 2)
        hf = _GGUF_LAYER_NAMES.get(part)
        return None if hf is None else f"model.layers.{idx}.{hf}.{kind}"
    hf = _GGUF_NAMES.get(stem)
    return None if hf is None else f"{hf}.{kind}"


def unpermute_qk(w: Any, n_head: int) -> Any:
    """Undo llama.cpp's conversion permutation of q/k projection rows (per head: interleaved pairs -> halves),
    as transformers' GGUF loader does."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"

    def _init_weights(self) -> None:
        """transformers' init: N(0, initializer_range) for Linear and Embedding weights, zero biases, ones for norms."""
        std = self.config.initializer_range
        with no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    init.normal_(p, 0.0, std)

    @classmethod
    def _from_gguf(cls, path: Path, **overrides: Any) -> LlamaPreTrainedModel:
        """Build the config from a GGUF file's ``llama.*`` metadata (``overrides`` win) and load its tensors."""
        from ..io.gguf import GGUFReader

        with GGUFReader(path) as reader:
            meta = reader.metadata
            arch = meta.get("general.architecture")
            if arch != "llama":
                raise ValueError(f"{path}: GGUF architecture is '{arch}', {cls.__name__} needs 'llama'")

            def field(key: str, default: Any = None) -> Any:
                value = meta.get(f"llama.{key}", default)
                if value is None:
                    raise ValueError(f"{path}: GGUF metadata has no 'llama.{key}'")
                return value

            heads = int(field("attention.head_count"))
            tokens = meta.get("tokenizer.ggml.tokens")
            vocab = len(tokens) if tokens is not None else int(field("vocab_size"))
            values = {
                "vocab_size": vocab, "hidden_size": int(field("embedding_length")),
                "intermediate_size": int(field("feed_forward_length")),
                "num_hidden_layers": int(field("block_count")), "num_attention_heads": heads,
                "num_key_value_heads": int(field("attention.head_count_kv", heads)),
                "rope_theta": float(field("rope.freq_base", 10000.0)),
                "rms_norm_eps": float(field("attention.layer_norm_rms_epsilon")),
                "max_position_embeddings": int(field("context_length", 2048)),
                "tie_word_embeddings": "output.weight" not in reader.tensors,
                "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
                "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
                "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
            }
            if "llama.rope.dimension_count" in meta:
                values["head_dim"] = int(meta["llama.rope.dimension_count"])
            if "llama.rope.scaling.type" in meta or "rope_freqs.weight" in reader.tensors:
                raise NotImplementedError(f"{path}: scaled RoPE (llama.rope.scaling.* / rope_freqs) is not supported")
            values.update(overrides)
            config = LlamaConfig(**values)
            with no_init_weights():  # every weight comes from the file (a missing one is an error below)
                model = cls(config)
            model._load_gguf_tensors(reader, path)
        model.eval()
        return model

    def _load_gguf_tensors(self, reader: Any, path: Path) -> None:
        """Put every GGUF tensor into its parameter, dequantised one at a time."""
        own = self.state_dict(keep_vars=True)
        bare = not any(k.startswith("model.") for k in own)  # LlamaModel: no "model." prefix, no head
        tied = "output.weight" not in reader.tensors
        cfg = self.config
        loaded, unexpected = set(), []
        with no_grad():
            for name in reader.tensors:
                hf = gguf_to_hf_name(name)
                if hf is not None and bare:
                    hf = hf[len("model."):] if hf.startswith("model.") else None
                if hf is None:
                    if not (bare and name.startswith("output.")):
                        unexpected.append(name)
                    continue
                if hf not in own:
                    unexpected.append(name)
                    continue
                target = own[hf]
                w = reader.get_tensor(name, dtype=target.dtype)
                if ".attn_q." in name:
                    w = unpermute_qk(w, cfg.num_attention_heads)
                elif ".attn_k." in name:
                    w = unpermute_qk(w, cfg.num_key_value_heads)
                if tuple(w.shape) != tuple(target.shape):
                    raise ValueError(f"{path}: tensor {name!r} has shape {tuple(w.shape)} but {type(self).__name__}"
                                     f".{hf} expects {tuple(target.shape)} (does the config match the file?)")
                # the fresh array becomes the parameter's storage: no copy, and the untouched ``empty`` pages
                # the model was built with are never faulted in (peak memory: the weights + one tensor)
                target.data = target._backend.asarray(w)
                loaded.add(hf)
        skip = {"lm_head.weight"} if tied else set()
        missing = [k for k in own if k not in loaded and k not in skip]
        if missing or unexpected:
            raise ValueError(f"{path}: GGUF tensors do not match {type(self).__name__}: missing {missing}, "
                             f"unexpected {unexpected}")
        self.tie_weights()


class LlamaModel(LlamaPreTrainedModel):
    """The Llama decoder stack without a head.

    ``forward`` returns ``last_hidden_state`` (B, L, d), ``past_key_values`` (a ``KVCache`` when ``use_cache``)
    and, with ``output_hidden_states``, the embeddings and every layer's output (the last one after ``norm``).
    Positions default to ``past + arange(L)``; ``generate`` passes them from the attention mask.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = ModuleList([LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False  # set by PreTrainedModel.gradient_checkpointing_enable()
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self._rotary: LlamaRotaryEmbedding | None = None
        self._init_weights()

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: KVCache | None = None, use_cache: bool | None = None,
                output_hidden_states: bool = False) -> BaseModelOutputWithPast:
        ids = input_ids if isinstance(input_ids, Tensor) else Tensor(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"LlamaModel: input_ids must be (batch, seq), got shape {tuple(ids.shape)}")
        xp = ids._backend.xp
        B, L = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            pos = xp.broadcast_to(xp.arange(past, past + L)[None, :], (B, L))
        else:
            pos = position_ids.data if isinstance(position_ids, Tensor) else xp.asarray(position_ids)
            pos = xp.broadcast_to(pos, (B, L))
        if self._rotary is None:
            self._rotary = LlamaRotaryEmbedding(self.config, xp)
        rope = self._rotary(pos, xp)
        x = self.embed_tokens(ids)
        bias = attention_bias(attention_mask, B, L, past, x)
        hidden = []
        for layer in self.layers:
            if output_hidden_states:
                hidden.append(x)
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, rope, bias, cache)
            else:
                x = layer(x, rope, bias, cache)
        x = self.norm(x)
        if output_hidden_states:
            hidden.append(x)
        return BaseModelOutputWithPast(last_hidden_state=x, past_key_values=cache,
                                       hidden_states=tuple(hidden) if output_hidden_states else None)


class LlamaForCausalLM(LlamaPreTrainedModel, GenerationMixin):
    """Llama with a language-modelling head (tied to ``embed_tokens`` when ``config.tie_word_embeddings``).

    Example:
        >>> model = LlamaForCausalLM.from_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")   # doctest: +SKIP
        >>> model.generate(input_ids, max_new_tokens=32)                                   # doctest: +SKIP
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self._tied_weights_keys = ("lm_head.weight",) if config.tie_word_embeddings else ()
        if config.tie_word_embeddings:
            self.tie_weights()
        else:
            init.normal_(self.lm_head.weight, 0.0, config.initializer_range)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: KVCache | None = None, use_cache: bool | None = None, labels: Any = None,
                output_hidden_states: bool = False, logits_to_keep: int = 0) -> CausalLMOutputWithPast:
        out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, use_cache=use_cache,
                         output_hidden_states=output_hidden_states)
        logits = lm_logits(self.lm_head, out.last_hidden_state, logits_to_keep)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states)
