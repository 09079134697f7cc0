"""MultiheadAttention (torch.nn.MultiheadAttention: same parameters, state_dict keys and semantics)."""
from __future__ import annotations

import math
from typing import Any

from ... import dtypes as _dt
from ...creation import empty
from ...ops.activation import softmax
from ...ops.attention import _additive_mask, packed_self_attention, scaled_dot_product_attention
from ...ops.dropout import dropout
from ...ops.linear import linear
from ...tensor import Tensor
from .. import init
from ..parameter import Parameter
from .linear import Linear
from .module import Module


class MultiheadAttention(Module):
    """Multi-head attention: ``out_proj(concat_h softmax(q_h k_h^T / sqrt(d) + mask) v_h)``.

    Args:
        embed_dim: model width E; split over ``num_heads`` heads of E // num_heads.
        dropout: dropout on the attention weights (training only).
        bias: biases on the input and output projections.
        kdim, vdim: feature sizes of key and value (default E). When they differ from E the input
            projection is three matrices ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim),
            ``v_proj_weight`` (E, vdim); otherwise one packed ``in_proj_weight`` (3E, E).
        batch_first: inputs/outputs are (N, L, E) instead of (L, N, E).
        add_bias_kv, add_zero_attn: not supported (raise NotImplementedError).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(output, weights)``; weights are (N, L, S)
    (averaged over heads) or (N, num_heads, L, S), or None when ``need_weights=False``.
    ``key_padding_mask`` (N, S): bool True = ignore that key, or float (added). ``attn_mask`` (L, S) or
    (N * num_heads, L, S): bool True = not allowed to attend, or float (added). Unbatched inputs (L, E) work.
    ``is_causal`` is a hint that ``attn_mask`` is the causal mask (torch); unlike torch, it may also be given
    without ``attn_mask``, and then the causal mask is applied.

    With ``need_weights=False`` (what the Transformer layers use) attention runs through the fused
    scaled_dot_product_attention (one packed gradient for self-attention); ``need_weights=True`` composes
    softmax and matmuls so that the returned weights are differentiable. As in torch, a query whose keys
    are all masked gives NaN with ``need_weights=True`` and zeros (before ``out_proj``) without.

    >>> mha = nf.nn.MultiheadAttention(16, 4, batch_first=True)
    >>> x = nf.randn(2, 5, 16)
    >>> out, w = mha(x, x, x)
    >>> out.shape, w.shape
    ((2, 5, 16), (2, 5, 5))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be positive and divisible by "
                             f"num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        dt = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()

        def param(*shape: int) -> Parameter:
            return Parameter(empty(*shape, dtype=dt, device=device))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = param(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = param(embed_dim, embed_dim)
            self.k_proj_weight = param(embed_dim, self.kdim)
            self.v_proj_weight = param(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = param(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dt)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's init: xavier_uniform_ input projections, zero biases (out_proj.weight keeps Linear's init)."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, " \
               f"batch_first={self.batch_first}"

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple:
        batched = self._check_inputs(query, key, value)
        if not batched:  # (L, E) -> (L, 1, E) / (1, L, E)
            bdim = 0 if self.batch_first else 1
            query, key, value = query.unsqueeze(bdim), key.unsqueeze(bdim), value.unsqueeze(bdim)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if self.batch_first:
            n, tgt_len, src_len = query.shape[0], query.shape[1], key.shape[1]
        else:
            n, tgt_len, src_len = query.shape[1], query.shape[0], key.shape[0]
        causal_fast = is_causal and key_padding_mask is None and not need_weights
        if is_causal and attn_mask is None and not causal_fast:  # torch raises here; we build the mask
            attn_mask = _additive_mask(None, True, tgt_len, src_len, query)
        mask = None if causal_fast else self._merge_masks(attn_mask, key_padding_mask, n, tgt_len, src_len, query)
        p = self.dropout if self.training else 0.0
        h, d = self.num_heads, self.head_dim
        # heads split as views: (N, H, L, d) for q/k/v, no copies
        bperm = (0, 2, 1, 3) if self.batch_first else (1, 2, 0, 3)  # (N, L, H, d) / (L, N, H, d) -> (N, H, L, d)
        packed = query is key and key is value and self._qkv_same_embed_dim
        if packed and not need_weights:
            qkv = linear(query, self.in_proj_weight, self.in_proj_bias)
            qkv = qkv.reshape(*qkv.shape[:2], 3, h, d).permute(2, *(a + (a >= 2) for a in bperm))  # (3, N, H, L, d)
            out = packed_self_attention(qkv, mask, p, is_causal=causal_fast)
            weights = None
        else:
            q, k, v = self._in_projection(query, key, value)
            q = q.reshape(*q.shape[:2], h, d).permute(*bperm)
            k = k.reshape(*k.shape[:2], h, d).permute(*bperm)
            v = v.reshape(*v.shape[:2], h, d).permute(*bperm)
            if need_weights:
                scores = (q * (1.0 / math.sqrt(d))) @ k.transpose(-1, -2)  # (N, H, L, S)
                if mask is not None:
                    scores = scores + mask
                weights = softmax(scores, dim=-1)
                weights = dropout(weights, p) if p > 0.0 else weights
                out = weights @ v
                if average_attn_weights:
                    weights = weights.mean(dim=1)
                if not batched:
                    weights = weights.squeeze(0)
            else:
                out = scaled_dot_product_attention(q, k, v, mask, p, is_causal=causal_fast)
                weights = None
        # (N, H, L, d) -> (N, L, E) or (L, N, E): the one copy before the output projection
        if self.batch_first:
            out = out.permute(0, 2, 1, 3).reshape(n, tgt_len, self.embed_dim)
        else:
            out = out.permute(2, 0, 1, 3).reshape(tgt_len, n, self.embed_dim)
        out = self.out_proj(out)
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
        return out, weights

    def _in_projection(self, query: Tensor, key: Tensor, value: Tensor) -> tuple:
        e = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if key is value:  # cross-attention (decoder): one GEMM for k and v together
                q = linear(query, w[:e], bq)
                kv = linear(key, w[e:], None if b is None else b[e:])
                return (q, *kv.chunk(2, dim=-1))
            wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return linear(query, wq, bq), linear(key, wk, bk), linear(value, wv, bv)

    def _merge_masks(self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, n: int, tgt_len: int,
                     src_len: int, like: Tensor) -> Tensor | None:
        """One float mask added to the (N, H, L, S) scores: bool True (= masked) becomes -inf."""
        merged = None
        if attn_mask is not None:
            merged = _additive(attn_mask, like, "attn_mask")
            if merged.ndim == 2:
                if tuple(merged.shape) != (tgt_len, src_len):
                    raise RuntimeError(f"MultiheadAttention: the 2D attn_mask has shape {tuple(merged.shape)}, "
                                       f"expected (L, S) = ({tgt_len}, {src_len})")
            elif merged.ndim == 3:
                if tuple(merged.shape) != (n * self.num_heads, tgt_len, src_len):
                    raise RuntimeError(f"MultiheadAttention: the 3D attn_mask has shape {tuple(merged.shape)}, "
                                       f"expected (N * num_heads, L, S) = "
                                       f"({n * self.num_heads}, {tgt_len}, {src_len})")
                merged = merged.reshape(n, self.num_heads, tgt_len, src_len)
            else:
                raise RuntimeError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape "
                                   f"{tuple(attn_mask.shape)}")
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, src_len):
                raise RuntimeError(f"MultiheadAttention: key_padding_mask has shape "
                                   f"{tuple(key_padding_mask.shape)}, expected (N, S) = ({n}, {src_len})")
            kpm = _additive(key_padding_mask, like, "key_padding_mask").reshape(n, 1, 1, src_len)
            merged = kpm if merged is None else merged + kpm
        return merged

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        """Validate shapes; True for batched (3-D) inputs, False for unbatched (2-D)."""
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise RuntimeError(f"MultiheadAttention: expected 3-D (batched) or 2-D (unbatched) query, key and "
                               f"value, got {shapes}")
        if query.dtype.kind != "f":
            raise RuntimeError(f"MultiheadAttention: expected a floating point query, got {query.dtype}")
        if query.shape[-1] != self.embed_dim or key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise RuntimeError(f"MultiheadAttention: expected feature sizes query {self.embed_dim}, key "
                               f"{self.kdim}, value {self.vdim}; got {shapes}")
        if key.shape[:-1] != value.shape[:-1]:
            raise RuntimeError(f"MultiheadAttention: key and value must have the same sequence length and "
                               f"batch size; got {shapes}")
        if query.ndim == 3:
            b = 0 if self.batch_first else 1
            if query.shape[b] != key.shape[b]:
                raise RuntimeError(f"MultiheadAttention: query and key batch sizes differ "
                                   f"(batch_first={self.batch_first}); got {shapes}")
        return query.ndim == 3


def _additive(mask: Tensor, like: Tensor, name: str) -> Tensor:
    """A bool mask (True = masked out) as 0 / -inf in ``like``'s dtype; float masks pass through."""
    xp = like._backend.xp
    if mask.dtype == xp.bool_:
        return Tensor._make(xp.where(mask.data, like.dtype.type(-xp.inf), like.dtype.type(0)), like._device)
    if mask.dtype.kind != "f":
        raise RuntimeError(f"MultiheadAttention: {name} must be bool or float, got {mask.dtype}")
    return mask if mask.dtype == like.dtype else mask.to(like.dtype)
