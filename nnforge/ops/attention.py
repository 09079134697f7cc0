"""Fused scaled dot-product attention (torch.nn.functional.scaled_dot_product_attention).

One Function with a hand-written backward: the (..., L, S) score buffer is produced by one GEMM and turned
into probabilities in place (mask add, max-shift, exp, normalise), so forward holds one L x S array (plus a
dropout mask when training). Backward uses the FlashAttention identity ``sum_j P_ij dP_ij = g_i . out_i``
to skip a pass over the score matrix, and works in place on the one L x S gradient buffer it allocates.

Fully masked rows (every key masked out) give a zero output and zero gradients, as torch's SDPA does
(the composed math, softmax of a row of -inf, would give NaN).
"""
from __future__ import annotations

import math
from typing import Any

from ..autograd.function import Function
from ..random import _rng
from ..tensor import Tensor
from ._util import unbroadcast


class ScaledDotProductAttention(Function):
    """q (..., L, E), k (..., S, E), v (..., S, Ev), additive float mask (..., L, S) or None -> (..., L, Ev).

    Batch dims broadcast. ``mask`` is already additive (0 / -inf for a bool mask, causal mask folded in).
    """
    uses_output = True

    def forward(self, q: Any, k: Any, v: Any, mask: Any, scale: float, dropout_p: float) -> Any:
        try:
            return self._attend(q, k, v, mask, scale, dropout_p)
        except ValueError:
            raise RuntimeError(f"scaled_dot_product_attention: batch dims of query {q.shape}, key {k.shape}, "
                               f"value {v.shape} and attn_mask {None if mask is None else mask.shape} do not "
                               f"broadcast") from None

    def _attend(self, q: Any, k: Any, v: Any, mask: Any, scale: float, dropout_p: float) -> Any:
        xp = self.backend.xp
        q = q * scale  # scaling q (L x E) is cheaper than the scores (L x S), and makes dk need no rescale
        p = xp.matmul(q, k.swapaxes(-1, -2))  # (..., L, S) scores, owned: everything below is in place
        if mask is not None:
            p += mask
        kernels = self.backend.kernels_for(p)
        if kernels is not None:
            kernels.softmax_(p, masked_rows_zero=True)
        else:
            m = p.max(axis=-1, keepdims=True)
            if mask is not None:  # a row with every key masked has max -inf: shift by 0 so exp gives 0, not NaN
                xp.copyto(m, 0, where=xp.isneginf(m))
            p -= m
            xp.exp(p, out=p)
            z = p.sum(axis=-1, keepdims=True)
            if mask is not None:
                xp.copyto(z, 1, where=z == 0)
            xp.divide(1, z, out=z)
            p *= z
        keep = None
        pd = p
        if dropout_p > 0.0:
            keep = _rng(None).random(p.shape, dtype=p.dtype if p.dtype.itemsize >= 4 else "float32") >= dropout_p
            self.drop_scale = p.dtype.type(1.0 / (1.0 - dropout_p))
            pd = p * self.drop_scale
            pd *= keep
        out = xp.matmul(pd, v)
        self.saved = (q, k, v, p, keep, out)  # q is the scaled query
        self.scale = scale
        self.mask_shape = None if mask is None else mask.shape
        return out

    def _grads(self, g: Any, need: tuple, out: tuple = (None, None, None)) -> tuple:
        """(dq, dk, dv, dmask) for the inputs flagged in ``need``, unreduced (broadcast batch shape);
        dq, dk, dv are written into the arrays of ``out`` where given."""
        xp = self.backend.xp
        q, k, v, p, keep, o = self.saved
        pd = p
        if keep is not None:
            pd = p * self.drop_scale
            pd *= keep
        dv = xp.matmul(pd.swapaxes(-1, -2), g, out=out[2]) if need[2] else None
        del pd
        ds = xp.matmul(g, v.swapaxes(-1, -2))  # dP (..., L, S), owned
        if keep is not None:
            ds *= keep
            ds *= self.drop_scale
        rowdot = xp.einsum("...i,...i->...", g, o)[..., None]  # sum_j P_ij dP_ij = g_i . out_i
        ds -= rowdot
        ds *= p  # d(scores)
        dq = dk = None
        if need[0]:
            dq = xp.matmul(ds, k, out=out[0])
            dq *= self.scale
        if need[1]:
            dk = xp.matmul(ds.swapaxes(-1, -2), q, out=out[1])
        dmask = ds if need[3] else None
        return dq, dk, dv, dmask

    def backward(self, g: Any) -> tuple:
        q, k, v = self.saved[:3]
        dq, dk, dv, dmask = self._grads(g, self.needs_input_grad)
        return (None if dq is None else unbroadcast(dq, q.shape),
                None if dk is None else unbroadcast(dk, k.shape),
                None if dv is None else unbroadcast(dv, v.shape),
                None if dmask is None else unbroadcast(dmask, self.mask_shape))


class PackedSelfAttention(ScaledDotProductAttention):
    """Self-attention on one packed input ``qkv`` (3, ..., L, E) (q, k, v stacked on axis 0, e.g. a view of
    a fused in-projection). Backward writes the three gradients into one contiguous (3, ..., L, E) array,
    so no zero-filled buffers and no concatenation."""

    def forward(self, qkv: Any, mask: Any, scale: float, dropout_p: float) -> Any:
        return self._attend(qkv[0], qkv[1], qkv[2], mask, scale, dropout_p)

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        q = self.saved[0]
        gqkv = xp.empty((3,) + q.shape, dtype=q.dtype)
        dmask = self._grads(g, (True, True, True, self.needs_input_grad[1]), out=tuple(gqkv))[3]
        return gqkv, (None if dmask is None else unbroadcast(dmask, self.mask_shape))


def _additive_mask(attn_mask: Tensor | None, is_causal: bool, L: int, S: int, like: Tensor) -> Tensor | None:
    """A float mask to add to the scores: bool masks (True = attend) become 0 / -inf; the causal mask
    (top-left aligned: query i sees keys j <= i) is (L, S)."""
    xp = like._backend.xp
    if is_causal:
        causal = xp.triu(xp.full((L, S), -xp.inf, dtype=like.dtype), 1)
        return Tensor._make(causal, like._device)
    if attn_mask is None:
        return None
    if attn_mask.dtype == xp.bool_:
        return Tensor._make(xp.where(attn_mask.data, like.dtype.type(0), like.dtype.type(-xp.inf)), like._device)
    if attn_mask.dtype != like.dtype:
        raise RuntimeError(f"scaled_dot_product_attention: attn_mask dtype {attn_mask.dtype} must be bool or "
                           f"match the query dtype {like.dtype}")
    return attn_mask


def _check(query: Tensor, key: Tensor, value: Tensor, enable_gqa: bool) -> None:
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.dtype.kind != "f":
            raise RuntimeError(f"{op}: {name} must be a floating point tensor with at least 2 dims (..., seq, "
                               f"features), got shape {tuple(t.shape)} and dtype {t.dtype}")
    shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeError(f"{op}: query, key and value must have the same dtype, got {query.dtype}, {key.dtype}, "
                           f"{value.dtype}")
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(f"{op}: query and key must have the same last (embedding) dim; got {shapes}")
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"{op}: key and value must have the same sequence length (dim -2); got {shapes}")
    if enable_gqa and (query.ndim < 3 or key.shape[-3] != value.shape[-3] or query.shape[-3] % key.shape[-3]):
        raise RuntimeError(f"{op}: enable_gqa needs (..., heads, seq, features) inputs whose query heads are a "
                           f"multiple of the key/value heads; got {shapes}")


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value, with dropout on the attention probabilities.

    Args:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev). Batch dims broadcast.
        attn_mask: bool (True = take part in attention) or float (added to the scores), broadcastable to
            (..., L, S). A float mask gets a gradient when it requires one.
        dropout_p: dropout probability on the attention weights (drawn from the global generator).
        is_causal: query i attends to keys j <= i (top-left aligned when L != S); excludes ``attn_mask``.
        scale: defaults to 1/sqrt(E).
        enable_gqa: grouped-query attention: query (..., Hq, L, E) with key/value (..., Hk, S, E) and
            Hq % Hk == 0; query head h uses key/value head h // (Hq // Hk).
    Returns:
        (..., L, Ev). Rows whose keys are all masked are zero (like torch), not NaN.

    Example:
        >>> q = k = v = nf.randn(2, 4, 16, 8)
        >>> F.scaled_dot_product_attention(q, k, v, is_causal=True).shape
        (2, 4, 16, 8)
    """
    _check(query, key, value, enable_gqa)
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1), got {dropout_p}")
    L, S = query.shape[-2], key.shape[-2]
    mask = _additive_mask(attn_mask, is_causal, L, S, query)
    if mask is not None and mask.ndim >= 1 and (mask.shape[-1] not in (1, S) or mask.ndim >= 2
                                                 and mask.shape[-2] not in (1, L)):
        raise RuntimeError(f"scaled_dot_product_attention: attn_mask of shape {tuple(mask.shape)} does not "
                           f"broadcast to the scores' (..., L={L}, S={S})")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if enable_gqa and query.shape[-3] != key.shape[-3]:
        # (..., Hq, L, E) -> (..., Hk, G, L, E) against (..., Hk, 1, S, E): broadcasting, no repeated K/V
        hk = key.shape[-3]
        grp = query.shape[-3] // hk
        q = query.reshape(*query.shape[:-3], hk, grp, L, query.shape[-1])
        k, v = key.unsqueeze(-3), value.unsqueeze(-3)
        if mask is not None:
            mask = mask.reshape(*mask.shape[:-3], hk, grp, *mask.shape[-2:]) if mask.ndim >= 3 and \
                mask.shape[-3] != 1 else mask.unsqueeze(-3)
        out = ScaledDotProductAttention.apply(q, k, v, mask, scale, float(dropout_p))
        return out.reshape(*out.shape[:-4], hk * grp, L, value.shape[-1])
    return ScaledDotProductAttention.apply(query, key, value, mask, scale, float(dropout_p))


def packed_self_attention(qkv: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                          is_causal: bool = False, scale: float | None = None) -> Tensor:
    """``scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], ...)`` for a packed (3, ..., L, E) input,
    with one fused gradient for ``qkv`` (the fast path of self-attention after a fused in-projection)."""
    if qkv.ndim < 3 or qkv.shape[0] != 3:
        raise RuntimeError(f"packed_self_attention: expected qkv of shape (3, ..., L, E), got {tuple(qkv.shape)}")
    if is_causal and attn_mask is not None:
        raise RuntimeError("packed_self_attention: explicit attn_mask should not be set when is_causal=True")
    L = qkv.shape[-2]
    mask = _additive_mask(attn_mask, is_causal, L, L, qkv)
    scale = 1.0 / math.sqrt(qkv.shape[-1]) if scale is None else float(scale)
    return PackedSelfAttention.apply(qkv, mask, scale, float(dropout_p))
