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
from ..tensor import Tensor
from ._util import unbroadcast
from .dropout import keep_mask


class ScaledDotProductAttention(Function):
    """q (..., L, E), k (..., S, E), v (..., S, Ev), additive float mask (..., L, S) or None -> (..., L, Ev).

    Batch dims broadcast. ``mask`` is already additive (0 / -inf for a bool mask, causal mask folded in).
    When q, k and v share their leading batch dim, forward and backward run one chunk of it per core
    (``backend.parallel_for``): each chunk's GEMMs, softmax and gradients stay in that core's cache.
    """
    uses_output = True

    def forward(self, q: Any, k: Any, v: Any, mask: Any, scale: float, dropout_p: float,
                trim_keys: bool = True) -> Any:
        try:
            return self._attend(q, k, v, mask, scale, dropout_p, trim_keys)
        except ValueError:
            raise RuntimeError(f"scaled_dot_product_attention: batch dims of query {q.shape}, key {k.shape}, "
                               f"value {v.shape} and attn_mask {None if mask is None else mask.shape} do not "
                               f"broadcast") from None

    def _attend(self, q: Any, k: Any, v: Any, mask: Any, scale: float, dropout_p: float,
                trim_keys: bool = True) -> Any:
        xp = self.backend.xp
        self.mask_shape = None if mask is None else mask.shape
        self.scale = scale
        qk_batch = xp.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        batch = xp.broadcast_shapes(qk_batch, v.shape[:-2], () if mask is None else mask.shape[:-2])
        n0 = batch[0] if batch else 1
        # chunk the leading batch axis when q, k, v all have it (no broadcasting along it) and the mask does not
        # enlarge the scores' batch shape
        self.chunked = batch == qk_batch and n0 > 1 and all(a.ndim == len(batch) + 2 and a.shape[0] == n0
                                                              for a in (q, k, v))
        kernels = self.backend.kernels_for(xp.empty(0, dtype=q.dtype))
        keep = None
        # a key-padding mask: each item attends to a prefix of the keys only, so its GEMMs and softmax can skip
        # the rest (their probabilities are exactly 0); not when the mask needs a gradient (it needs every score)
        self.key_len = _key_lengths(xp, mask, batch, k.shape[-2]) if self.chunked and trim_keys else None
        # the compiled softmax takes the scale on the key-trimmed path; elsewhere q is scaled once (L x E is
        # cheaper than the L x S scores, and then dk needs no rescale), in C order (``q * scale`` would keep a
        # strided view's memory order)
        self.q_scaled = self.key_len is None or kernels is None or scale <= 0
        if self.q_scaled:
            q = xp.multiply(q, q.dtype.type(scale), out=xp.empty(q.shape, dtype=q.dtype))
        if self.key_len is not None:
            p_shape = batch + (q.shape[-2], k.shape[-2])
            # backward needs every item's probabilities; without a graph each thread reuses one item's block,
            # which then stays in its core's cache (MiniLM's attention alone: 8.4-8.6 -> 8.2 ms per layer)
            p = xp.empty(p_shape, dtype=q.dtype) if self.records else None
            out = _heads_inner_empty(xp, batch + (q.shape[-2], v.shape[-1]), q.dtype)
            if dropout_p > 0.0:
                keep = self._dropout_mask(p_shape, q.dtype, dropout_p)
            self.backend.parallel_for(n0, lambda sl: self._attend_items(sl, q, k, v, p, keep, out, kernels,
                                                                         p_shape[1:]))
        elif self.chunked:
            p = xp.empty(batch + (q.shape[-2], k.shape[-2]), dtype=q.dtype)
            out = _heads_inner_empty(xp, batch + (q.shape[-2], v.shape[-1]), q.dtype)
            slice_mask = mask is not None and mask.ndim == len(batch) + 2 and mask.shape[0] == n0
            if dropout_p > 0.0:
                keep = self._dropout_mask(p.shape, p.dtype, dropout_p)

            def run(sl: slice) -> None:
                # k, v may be strided views (of a packed qkv): a contiguous copy of one slice is cheap and
                # makes both GEMMs faster
                ps = xp.matmul(q[sl], xp.ascontiguousarray(k[sl]).swapaxes(-1, -2), out=p[sl])
                self._softmax_(ps, None if mask is None else mask[sl] if slice_mask else mask, kernels, True)
                pd = ps if keep is None else self._dropped(ps, keep[sl])
                xp.matmul(pd, xp.ascontiguousarray(v[sl]), out=out[sl])

            self.backend.parallel_for(n0, run)  # one batch item at a time: its scores stay in cache
        else:
            p = xp.matmul(q, k.swapaxes(-1, -2))  # (..., L, S) scores, owned: everything below is in place
            p = self._softmax_(p, mask, kernels, False)
            pd = p
            if dropout_p > 0.0:
                keep = self._dropout_mask(p.shape, p.dtype, dropout_p)
                pd = self._dropped(p, keep)
            out = xp.matmul(pd, v)
        self.saved = (q, k, v, p, keep, out)  # q is the scaled query unless not self.q_scaled
        return out

    def _attend_items(self, sl: slice, q: Any, k: Any, v: Any, p: Any, keep: Any, out: Any, kernels: Any,
                      item_shape: tuple) -> None:
        """Forward of the batch items in ``sl`` over their first ``key_len[i]`` keys. Item i's probabilities
        are the first (..., L, key_len[i]) elements of ``p[i]`` (see ``_prefix_view``), or of one scratch
        block of ``item_shape`` that every item here reuses when ``p`` is None."""
        xp = self.backend.xp
        scratch = xp.empty(item_shape, dtype=q.dtype) if p is None else None
        for i in range(sl.start, sl.stop):
            n = int(self.key_len[i])
            ps = _prefix_view(scratch if p is None else p[i], n)
            # q, k and v straight from their (strided) views: BLAS reads rows at any stride, and a copy measured slower
            xp.matmul(q[i], k[i, ..., :n, :].swapaxes(-1, -2), out=ps)
            if self.q_scaled:
                self._softmax_(ps, None, kernels, True)
            else:
                kernels.softmax_(ps, masked_rows_zero=True, serial=True, scale=self.scale)
            # the dropout mask keeps the untrimmed layout, so a seed drops the same weights on either path
            pd = ps if keep is None else self._dropped(ps, keep[i][..., :n])
            xp.matmul(pd, v[i, ..., :n, :], out=out[i])

    def _item_grads(self, g: Any, need: tuple, i: int, out: list) -> None:
        """(dq, dk, dv) of batch item i after a key-trimmed forward, written into ``out``'s arrays (the rows
        of dk and dv for the keys it skipped are 0)."""
        xp = self.backend.xp
        q, k, v, p, keep, o = (None if a is None else a[i] for a in self.saved)
        n = int(self.key_len[i])
        k, v, p, g = k[..., :n, :], v[..., :n, :], _prefix_view(p, n), g[i]
        keep = None if keep is None else keep[..., :n]
        pd = p if keep is None else self._dropped(p, keep)
        if need[2]:
            _matmul_into(xp, pd.swapaxes(-1, -2), g, out[2][..., :n, :])
            out[2][..., n:, :] = 0
        del pd
        ds = xp.matmul(g, v.swapaxes(-1, -2))  # dP (..., L, n)
        if keep is not None:
            ds *= keep
            ds *= self.drop_scale
        ds -= xp.einsum("...i,...i->...", g, o)[..., None]  # sum_j P_ij dP_ij = g_i . out_i
        ds *= p
        if need[0]:
            _matmul_into(xp, ds, k, out[0])
            out[0] *= self.scale
        if need[1]:
            _matmul_into(xp, ds.swapaxes(-1, -2), q, out[1][..., :n, :])
            if not self.q_scaled:
                out[1][..., :n, :] *= self.scale
            out[1][..., n:, :] = 0

    def _dropout_mask(self, shape: tuple, dtype: Any, dropout_p: float) -> Any:
        self.drop_scale = dtype.type(1.0 / (1.0 - dropout_p))
        return keep_mask(shape, dropout_p)

    def _dropped(self, p: Any, keep: Any) -> Any:
        pd = p * self.drop_scale
        pd *= keep
        return pd

    def _softmax_(self, p: Any, mask: Any, kernels: Any, serial: bool) -> Any:
        """Scores -> probabilities in place: add the mask, then softmax over the keys; a row with every key
        masked becomes 0 (not NaN). Returns the probabilities: ``p`` itself, or a new larger array when the
        mask adds batch dims."""
        xp = self.backend.xp
        if mask is not None:
            if kernels is not None and serial and kernels.masked_softmax_serial_(p, mask):
                return p
            if xp.broadcast_shapes(p.shape, mask.shape) == p.shape:
                p += mask
            else:
                p = p + mask
        if kernels is not None:
            kernels.softmax_(p, masked_rows_zero=True, serial=serial)
            return p
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
        return p

    def _grads(self, g: Any, need: tuple, out: tuple = (None, None, None)) -> tuple:
        """(dq, dk, dv, dmask) for the inputs flagged in ``need``; dq, dk, dv have the shapes of the saved
        q, k, v (written into the arrays of ``out`` where given), dmask is unreduced (the scores' shape)."""
        xp = self.backend.xp
        q, k, v = self.saved[:3]
        if not self.chunked or need[3]:
            dq, dk, dv, dmask = self._chunk_grads(g, need, Ellipsis)
            return (None if dq is None else _into(xp, unbroadcast(dq, q.shape), out[0]),
                    None if dk is None else _into(xp, unbroadcast(dk, k.shape), out[1]),
                    None if dv is None else _into(xp, unbroadcast(dv, v.shape), out[2]), dmask)
        full = [o if o is not None else (xp.empty_like(a) if n else None)
                for o, a, n in zip(out, (q, k, v), need[:3])]

        def run(sl: slice) -> None:
            if self.key_len is not None:
                for i in range(sl.start, sl.stop):
                    self._item_grads(g, need, i, [None if f is None else f[i] for f in full])
                return
            dests = [None if f is None else f[sl] for f in full]
            grads = self._chunk_grads(g, need, sl, dests)
            for dst, d in zip(dests, grads[:3]):
                if dst is not None and d is not dst:  # not written in place: reduce broadcast dims into it
                    dst[...] = unbroadcast(d, dst.shape)

        self.backend.parallel_for(q.shape[0], run)
        return full[0], full[1], full[2], None

    def _chunk_grads(self, g: Any, need: tuple, sl: Any, out: Any = (None, None, None)) -> tuple:
        """Unreduced (dq, dk, dv, dmask) of one batch chunk ``sl`` (Ellipsis: everything); results whose shape
        equals the chunk's input shape are written into ``out``."""
        xp = self.backend.xp
        q, k, v, p, keep, o = (None if a is None else a[sl] for a in self.saved)
        if sl is not Ellipsis:  # one batch item: see _attend
            k, v = xp.ascontiguousarray(k), xp.ascontiguousarray(v)
        g = g[sl]
        pshape = p.shape[:-2]

        def dest(i: int, like: Any) -> Any:
            return out[i] if out[i] is not None and xp.broadcast_shapes(pshape, like.shape[:-2]) == \
                like.shape[:-2] else None

        pd = p if keep is None else self._dropped(p, keep)
        dv = xp.matmul(pd.swapaxes(-1, -2), g, out=dest(2, v)) if need[2] else None
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
            dq = xp.matmul(ds, k, out=dest(0, q))
            dq *= self.scale
        if need[1]:
            dk = xp.matmul(ds.swapaxes(-1, -2), q, out=dest(1, k))
        return dq, dk, dv, (ds if need[3] else None)

    def backward(self, g: Any) -> tuple:
        dq, dk, dv, dmask = self._grads(g, self.needs_input_grad)
        return dq, dk, dv, (None if dmask is None else unbroadcast(dmask, self.mask_shape))


def _key_lengths(xp: Any, mask: Any, batch: tuple, S: int) -> Any:
    """Per item of the leading batch axis, how many keys take part, when the additive ``mask`` is a key-padding
    mask: shape (B, 1, ..., 1, S), each item's row 0 for a prefix of the keys and -inf (or <= -1e30, e.g.
    transformers' finfo.min, whose probabilities are 0 just the same) after it. None when the mask has any
    other form, keeps every key, or masks an item's every key (that row's result then follows the mask's values)."""
    if mask is None or mask.shape != (batch[0],) + (1,) * (len(batch) - 1) + (1, S):
        return None
    m = mask.reshape(batch[0], S)
    keep = m == 0
    lengths = keep.sum(axis=1)
    if lengths.min() < 1 or lengths.min() == S:
        return None
    prefix = xp.arange(S) < lengths[:, None]
    if not (keep == prefix).all() or not (keep | (m <= -1e30)).all():
        return None
    return lengths


def _heads_inner_empty(xp: Any, shape: tuple, dtype: Any) -> Any:
    """An uninitialised (B, H, L, E) array laid out as (B, L, H, E): models turn attention's output back
    into (B, L, H * E) next, which is then a free reshape instead of a copy (the GEMMs write each head's
    (L, E) block with row stride H * E, which BLAS takes as is). Other ranks: C order."""
    if len(shape) != 4:
        return xp.empty(shape, dtype=dtype)
    b, h, n, e = shape
    return xp.empty((b, n, h, e), dtype=dtype).transpose(0, 2, 1, 3)


def _prefix_view(block: Any, n: int) -> Any:
    """The first elements of a C-contiguous ``block`` (..., L, S) seen as a C-contiguous (..., L, n) array: a
    key-trimmed item's probabilities live there, contiguous, so GEMMs and kernels see a plain array."""
    return block.reshape(-1)[:block.size // block.shape[-1] * n].reshape(block.shape[:-1] + (n,))


def _matmul_into(xp: Any, a: Any, b: Any, dst: Any) -> None:
    """dst = a @ b, summed over the batch dims that ``a @ b`` broadcasts beyond ``dst``'s (GQA's key heads)."""
    if xp.broadcast_shapes(a.shape[:-2], b.shape[:-2]) == dst.shape[:-2]:
        xp.matmul(a, b, out=dst)
    else:
        dst[...] = unbroadcast(xp.matmul(a, b), dst.shape)


def _into(xp: Any, a: Any, out: Any) -> Any:
    """``a``, copied into ``out`` when one is given (and ``a`` is not already it)."""
    if out is None or a is out:
        return a
    xp.copyto(out, a)
    return out


class PackedSelfAttention(ScaledDotProductAttention):
    """Self-attention on one packed input ``qkv`` (3, ..., L, E) (q, k, v stacked on axis 0, e.g. a view of
    a fused in-projection). Backward writes the three gradients into one contiguous (3, ..., L, E) array,
    so no zero-filled buffers and no concatenation."""

    def forward(self, qkv: Any, mask: Any, scale: float, dropout_p: float, trim_keys: bool = True) -> Any:
        return self._attend(qkv[0], qkv[1], qkv[2], mask, scale, dropout_p, trim_keys)

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


def _may_trim(mask: Tensor | None) -> bool:
    """Keys a mask excludes may be skipped unless the mask needs a gradient (that needs every score)."""
    return mask is None or not mask.requires_grad


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
        out = ScaledDotProductAttention.apply(q, k, v, mask, scale, float(dropout_p), _may_trim(mask))
        return out.reshape(*out.shape[:-4], hk * grp, L, value.shape[-1])
    return ScaledDotProductAttention.apply(query, key, value, mask, scale, float(dropout_p), _may_trim(mask))


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
    return PackedSelfAttention.apply(qkv, mask, scale, float(dropout_p), _may_trim(mask))
