"""GPT-2 (Radford et al. 2019) with Hugging Face's module and weight names.

Weight layout: Hugging Face stores ``c_attn``, ``c_proj`` and ``c_fc`` as ``Conv1D`` with weight (in, out).
Here they are plain ``nn.Linear`` (weight (out, in), as everywhere else in nnforge, so LoRA, freezing and
every Linear tool apply unchanged); ``_from_checkpoint_keys`` transposes those four weights per block on
load and ``_to_checkpoint_keys`` transposes them back on save, so files stay interchangeable with transformers.
Checkpoint keys ``attn.bias`` / ``attn.masked_bias`` (causal-mask buffers of old checkpoints) are dropped.

    transformer.wte (vocab, d)   transformer.wpe (n_positions, d)   transformer.drop
    transformer.h.N: ln_1 -> attn (c_attn: d -> 3d, c_proj) -> + -> ln_2 -> mlp (c_fc: d -> 4d, gelu_new, c_proj) -> +
    transformer.ln_f             lm_head (tied to wte)
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

from ..autograd.grad_mode import no_grad
from ..nn import init
from ..nn.modules.container import ModuleList
from ..nn.modules.dropout import Dropout
from ..nn.modules.linear import Linear
from ..nn.modules.module import Module
from ..nn.modules.normalization import LayerNorm
from ..nn.modules.sparse import Embedding
from ..ops.attention import scaled_dot_product_attention
from ..tensor import Tensor
from ..utils.checkpoint import checkpoint
from .configuration import PretrainedConfig
from .generation import GenerationMixin, KVCache, activation, attention_bias, causal_lm_loss, lm_logits
from .modeling_utils import PreTrainedModel
from .outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

__all__ = ["GPT2Config", "GPT2LMHeadModel", "GPT2Model"]

class GPT2Config(PretrainedConfig):
    """GPT-2 hyper-parameters with transformers' defaults (the 124M model). ``hidden_size``,
    ``num_attention_heads``, ``num_hidden_layers`` and ``max_position_embeddings`` alias the n_* fields."""

    model_type = "gpt2"
    defaults: ClassVar[dict] = {
        "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "summary_type": "cls_index",
        "summary_use_proj": True, "summary_activation": None, "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1, "scale_attn_weights": True, "use_cache": True, "bos_token_id": 50256,
        "eos_token_id": 50256, "pad_token_id": None, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": True,
    }

    hidden_size = property(lambda self: self.n_embd)
    num_attention_heads = property(lambda self: self.n_head)
    num_hidden_layers = property(lambda self: self.n_layer)
    max_position_embeddings = property(lambda self: self.n_positions)


class GPT2Attention(Module):
    """Causal multi-head self-attention: one fused projection ``c_attn`` (d -> 3d), ``c_proj`` (d -> d)."""

    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        d, self.num_heads = config.n_embd, config.n_head
        if d % self.num_heads:
            raise ValueError(f"GPT2Attention: n_embd {d} is not a multiple of n_head {self.num_heads}")
        self.head_dim = d // self.num_heads
        self.layer_idx = layer_idx
        self.scale = (1.0 / math.sqrt(self.head_dim)) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1
        self.attn_pdrop = config.attn_pdrop
        self.c_attn = Linear(d, 3 * d)
        self.c_proj = Linear(d, d)
        self.resid_dropout = Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, bias: Tensor | None, cache: KVCache | None) -> Tensor:
        B, L, d = x.shape
        qkv = self.c_attn(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, nh, L, hs)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        y = scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                         dropout_p=self.attn_pdrop if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, L, d)
        return self.resid_dropout(self.c_proj(y))


class GPT2MLP(Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        d = config.n_embd
        inner = config.n_inner if config.n_inner is not None else 4 * d
        self.c_fc = Linear(d, inner)
        self.c_proj = Linear(inner, d)
        self.act = activation(config.activation_function)
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        if config.add_cross_attention:
            raise NotImplementedError("GPT2Block: add_cross_attention is not supported")
        d, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = LayerNorm(d, eps=eps)
        self.mlp = GPT2MLP(config)

    def forward(self, x: Tensor, bias: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), bias, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    _conv1d = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
    _dropped = (".attn.bias", ".attn.masked_bias")

    def _init_weights(self) -> None:
        """transformers' init: N(0, 0.02) weights, zero biases, and c_proj weights scaled by 1/sqrt(2 n_layer)."""
        std = self.config.initializer_range
        with no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln_" in name or name.startswith("ln_"):
                    p.fill_(1.0)
                else:
                    s = std / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") else std
                    init.normal_(p, 0.0, s)

    def _from_checkpoint_keys(self, state: dict) -> dict:
        out = {}
        for k, v in state.items():
            if k.endswith(self._dropped):
                continue
            out[k] = v.T if k.endswith(self._conv1d) else v  # Conv1D (in, out) -> Linear (out, in)
        return out

    def _to_checkpoint_keys(self, state: dict) -> dict:
        return {k: (v.T.copy() if k.endswith(self._conv1d) else v) for k, v in state.items()}


class GPT2Model(GPT2PreTrainedModel):
    """The GPT-2 transformer without a head: token + position embeddings, ``n_layer`` blocks, final LayerNorm.

    ``forward`` returns ``last_hidden_state`` (B, L, d), ``past_key_values`` (a ``KVCache`` when
    ``use_cache``) and, with ``output_hidden_states``, the embeddings and every block's output (the last one
    after ``ln_f``), as transformers does.
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        d = config.n_embd
        self.wte = Embedding(config.vocab_size, d)
        self.wpe = Embedding(config.n_positions, d)
        self.drop = Dropout(config.embd_pdrop)
        self.h = ModuleList([GPT2Block(config, i) for i in range(config.n_layer)])
        self.gradient_checkpointing = False  # set by PreTrainedModel.gradient_checkpointing_enable()
        self.ln_f = LayerNorm(d, eps=config.layer_norm_epsilon)
        self._init_weights()

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: KVCache | None = None, use_cache: bool | None = None,
                output_hidden_states: bool = False) -> BaseModelOutputWithPast:
        ids = input_ids if isinstance(input_ids, Tensor) else Tensor(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"GPT2Model: input_ids must be (batch, seq), got shape {tuple(ids.shape)}")
        B, L = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = Tensor._make(ids._backend.xp.arange(past, past + L)[None, :], ids._device)
        if past + L > self.config.n_positions:
            raise ValueError(f"GPT2Model: {past + L} positions exceed n_positions={self.config.n_positions}")
        x = self.drop(self.wte(ids) + self.wpe(position_ids))
        bias = attention_bias(attention_mask, B, L, past, x)
        hidden = []
        for block in self.h:
            if output_hidden_states:
                hidden.append(x)
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(block, x, bias, cache)
            else:
                x = block(x, bias, cache)
        x = self.ln_f(x)
        if output_hidden_states:
            hidden.append(x)
        return BaseModelOutputWithPast(last_hidden_state=x, past_key_values=cache,
                                       hidden_states=tuple(hidden) if output_hidden_states else None)


class GPT2LMHeadModel(GPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with a language-modelling head tied to the token embedding.

    Example:
        >>> model = GPT2LMHeadModel.from_pretrained("path/to/gpt2")            # doctest: +SKIP
        >>> model(input_ids, labels=input_ids).loss                              # doctest: +SKIP
        >>> model.generate(input_ids, max_new_tokens=20)                         # doctest: +SKIP
    """

    _tied_weights_keys = ("lm_head.weight",)

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: KVCache | None = None, use_cache: bool | None = None, labels: Any = None,
                output_hidden_states: bool = False, logits_to_keep: int = 0) -> CausalLMOutputWithPast:
        out = self.transformer(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               past_key_values=past_key_values, use_cache=use_cache,
                               output_hidden_states=output_hidden_states)
        logits = lm_logits(self.lm_head, out.last_hidden_state, logits_to_keep)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states)
