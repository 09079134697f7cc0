"""Pooling: max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d.

Max and average pooling loop over the kernel offsets (kh*kw strided views of the padded input), never over
pixels. Max pooling keeps the winning offset per output (uint8) for backward; like torch, the first maximum
of a window wins ties and NaN propagates. Work happens in the input's memory layout (channels-last after a
convolution); outputs are returned contiguous NCHW, so ``view(N, -1)`` after pooling works as in torch.
Max pooling of a channels-last float32 input (a convolution's output) runs as one compiled pass forward and
one backward (``numba_conv_kernels``: bounds checks instead of a padded copy; windows that tile the input
write the gradient without a zeroing pass), with the same rules and the same saved offsets.
Adaptive average pooling is a GEMM with a (H*W, Ho*Wo) averaging matrix built from torch's bins
``[floor(i*H/Ho), ceil((i+1)*H/Ho))``, so output sizes that do not divide the input are exact too.
"""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..autograd.grad_mode import GRAD_ENABLED
from ..tensor import Tensor
from .conv import ntuple
from .shape import squeeze, unsqueeze


def _windows(a: Any, k: tuple, s: tuple, d: tuple, out: tuple) -> list:
    """The kh*kw strided views (N, C, Ho, Wo) of ``a``, one per kernel offset, row-major."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k, s, d, out
    return [a[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def _padded(xp: Any, x: Any, pad: tuple, size: tuple, fill: float) -> Any:
    """``x`` (N, C, H, W) inside a buffer of spatial ``size`` filled with ``fill``, at offset ``pad``,
    in ``x``'s memory layout; ``x`` itself when nothing is added."""
    (ph, pw), (hp, wp) = pad, size
    N, C, H, W = x.shape
    if (hp, wp) == (H, W):
        return x
    buf = xp.empty_like(x, shape=(N, C, hp, wp))
    buf.fill(fill)
    buf[:, :, ph:ph + H, pw:pw + W] = x
    return buf


def _like(xp: Any, g: Any, ref: Any) -> Any:
    """``g`` in the memory layout of ``ref`` (same shape), copying only when the layouts differ."""
    out = xp.empty_like(ref, dtype=g.dtype)
    if out.strides == g.strides:
        return g
    out[...] = g
    return out


class _Pool(Function):
    """Shared geometry: arrays are (N, C, H, W); 1-d pooling is run with H = 1."""

    uses_inputs = False

    def _setup(self, x: Any, geom: tuple) -> Any:
        self.one_d = x.ndim == 3
        if self.one_d:
            x = x[:, :, None, :]
        self.geom = geom
        self.in_shape = x.shape
        return x

    def _finish(self, xp: Any, out: Any) -> Any:
        out = xp.ascontiguousarray(out)
        return out[:, :, 0, :] if self.one_d else out

    def _grad_input(self, dx: Any) -> Any:
        pad = self.geom[3]
        H, W = self.in_shape[2:]
        dx = dx[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W]
        return dx[:, :, 0, :] if self.one_d else dx


class MaxPool(_Pool):
    def forward(self, x: Any, geom: tuple, need_grad: bool, indices_out: list | None = None) -> Any:
        xp = self.backend.xp
        x = self._setup(x, geom)
        x4 = x.transpose(0, 2, 3, 1)
        kernels = self.backend.kernels_for(x4) if x4.flags.c_contiguous else None  # channels-last memory
        if kernels is not None:  # one compiled pass, no padded copy
            out, idx = kernels.max_pool2d(x4, geom)
            self.saved = (kernels, idx) if need_grad else None
            if indices_out is not None:
                indices_out.append(self._flat_indices(xp, idx.transpose(0, 3, 1, 2)))
            return out[:, :, 0, :] if self.one_d else out
        k, s, d, pad, out_hw, size = geom
        views = _windows(_padded(xp, x, pad, size, -float("inf")), k, s, d, out_hw)
        out = views[0].copy(order="K")
        for v in views[1:]:
            xp.maximum(out, v, out=out)  # NaN propagates, as in torch
        if need_grad or indices_out is not None:
            idx = self._argmax(xp, views, out)
            if need_grad:
                self.saved = (None, idx)
            if indices_out is not None:
                indices_out.append(self._flat_indices(xp, idx))
        return self._finish(xp, out)

    @staticmethod
    def _argmax(xp: Any, views: list, out: Any) -> Any:
        """Kernel offset of each window's first maximum (torch's tie rule), or of its last NaN.

        Masked writes are slow in NumPy, so offsets are merged arithmetically: idx += (n - idx) * hit
        (exact in uint8 wrap-around), walking backwards so that the first hit is the one that stays."""
        dt = xp.uint8 if len(views) < 256 else xp.int32
        idx = xp.zeros_like(out, dtype=dt)
        hit = xp.empty_like(out, dtype=bool)
        step = xp.empty_like(idx)

        def merge(n: int) -> None:
            xp.subtract(dt(n), idx, out=step)
            xp.multiply(step, hit, out=step)
            xp.add(idx, step, out=idx)

        for n in range(len(views) - 1, -1, -1):
            xp.equal(views[n], out, out=hit)
            merge(n)
        if bool(xp.isnan(out).any()):  # torch keeps the last NaN of a window
            for n in range(len(views)):
                xp.isnan(views[n], out=hit)
                merge(n)
        return idx

    def _flat_indices(self, xp: Any, idx: Any) -> Any:
        """Offsets -> torch's indices into each input plane, flattened over (H, W) (over L for 1-d)."""
        (_, kw), (sh, sw), (dh, dw), (ph, pw), (ho, wo), _ = self.geom
        W = self.in_shape[3]
        idx = idx.astype(xp.int64)
        row = (xp.arange(ho) * sh - ph)[:, None] + (idx // kw) * dh
        col = (xp.arange(wo) * sw - pw)[None, :] + (idx % kw) * dw
        flat = xp.ascontiguousarray(row * W + col)
        return flat[:, :, 0, :] if self.one_d else flat

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        kernels, idx = self.saved
        k, s, d, _, out_hw, size = self.geom
        if self.one_d:
            g = g[:, :, None, :]
        if kernels is not None:
            dx = kernels.max_pool2d_grad(g.astype(xp.float32, copy=False).transpose(0, 2, 3, 1), idx,
                                         self.in_shape[2:], self.geom)
            return dx[:, :, 0, :] if self.one_d else dx
        g = _like(xp, g, idx)
        N, C = self.in_shape[:2]
        dx = xp.zeros_like(idx, dtype=g.dtype, shape=(N, C) + size)
        overlap = any(si < di * (ki - 1) + 1 for ki, si, di in zip(k, s, d))
        hit = xp.empty_like(idx, dtype=bool)
        for n, view in enumerate(_windows(dx, k, s, d, out_hw)):
            xp.equal(idx, n, out=hit)
            if overlap:
                view += g * hit
            else:  # each input position is in at most one window
                xp.multiply(g, hit, out=view)
        return self._grad_input(dx)


class AvgPool(_Pool):
    def forward(self, x: Any, geom: tuple, divisor: Any) -> Any:
        xp = self.backend.xp
        x = self._setup(x, geom)
        k, s, d, pad, out_hw, size = geom
        views = _windows(_padded(xp, x, pad, size, 0), k, s, d, out_hw)
        out = views[0].copy(order="K")
        for v in views[1:]:
            out += v
        self.divisor = divisor = divisor if isinstance(divisor, float) else xp.asarray(divisor, dtype=x.dtype)
        out /= divisor
        return self._finish(xp, out)

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        k, s, d, _, out_hw, size = self.geom
        if self.one_d:
            g = g[:, :, None, :]
        g = g / self.divisor
        N, C = self.in_shape[:2]
        dx = xp.zeros((N, C) + size, dtype=g.dtype)
        for view in _windows(dx, k, s, d, out_hw):
            view += g
        return self._grad_input(dx)


class AdaptiveAvgPool(Function):
    """out = x (N*C, H*W) @ A (H*W, Ho*Wo), A the Kronecker product of the per-axis averaging matrices."""

    uses_inputs = False

    def forward(self, x: Any, out_size: tuple) -> Any:
        xp = self.backend.xp
        self.in_shape = x.shape
        N, C = x.shape[:2]
        mats = [_bin_matrix(xp, n, o, x.dtype) for n, o in zip(x.shape[2:], out_size)]
        a = mats[0].T if x.ndim == 3 else xp.einsum("ph,qw->hwpq", *mats).reshape(-1, out_size[0] * out_size[1])
        self.saved = a  # (H*W, Ho*Wo)
        if x.flags.c_contiguous or x.ndim == 3:
            out = xp.matmul(x.reshape(N * C, -1), a)
        else:  # channels-last (after a convolution): a batched GEMM reads x without a transposing copy
            xl = x.transpose(0, 2, 3, 1).reshape(N, -1, C)
            out = xp.ascontiguousarray(xp.matmul(a.T, xl).transpose(0, 2, 1))
        return out.reshape((N, C) + tuple(out_size))

    def backward(self, g: Any) -> Any:
        N, C = self.in_shape[:2]
        return self.backend.xp.matmul(g.reshape(N * C, -1), self.saved.T).reshape(self.in_shape)


def _bin_matrix(xp: Any, n_in: int, n_out: int, dtype: Any) -> Any:
    """(n_out, n_in) averaging matrix over torch's adaptive bins [floor(i*n/o), ceil((i+1)*n/o))."""
    i = xp.arange(n_out)
    start, end = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
    j = xp.arange(n_in)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _check_input(x: Any, nd: int, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected a {nd + 2}-d (batched) or {nd + 1}-d (unbatched) input, got shape "
                           f"{tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, got {x.dtype}")


def _pool_geom(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool, nd: int,
               op: str) -> tuple:
    """(kernel, stride, dilation, padding, out size, padded buffer size), each a pair (1-d: H = 1)."""
    _check_input(x, nd, op)
    k = ntuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else ntuple(stride, nd, "stride", op)
    p = ntuple(padding, nd, "padding", op)
    d = ntuple(dilation, nd, "dilation", op)
    if min(k + s + d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be positive and padding non-negative, got "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d}")
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    spatial = tuple(x.shape[-nd:])
    out, size = [], []
    for n, ki, si, pi, di in zip(spatial, k, s, p, d):
        o = (n + 2 * pi - di * (ki - 1) - 1 + (si - 1 if ceil_mode else 0)) // si + 1
        if ceil_mode and (o - 1) * si >= n + pi:  # the last window must start inside the input or left padding
            o -= 1
        out.append(o)
        size.append(max((o - 1) * si + di * (ki - 1) + 1, n + pi))
    if min(out) < 1:
        raise RuntimeError(f"{op}: input of shape {tuple(x.shape)} is too small for kernel_size={k}, stride={s}, "
                           f"padding={p}, dilation={d} (output size {tuple(out)})")
    if nd == 1:
        return (1,) + k, (1,) + s, (1,) + d, (0,) + p, (1, out[0]), (1, size[0])
    return k, s, d, p, tuple(out), tuple(size)


def _unbatched(x: Tensor, nd: int) -> bool:
    return x.ndim == nd + 1


def _max_pool(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
              return_indices: bool, nd: int, op: str) -> Any:
    geom = _pool_geom(x, kernel_size, stride, padding, dilation, ceil_mode, nd, op)
    unbatched = _unbatched(x, nd)
    if unbatched:
        x = unsqueeze(x, 0)
    box: list | None = [] if return_indices else None
    out = MaxPool.apply(x, geom, x.requires_grad and GRAD_ENABLED[0], indices_out=box)
    if unbatched:
        out = squeeze(out, 0)
    if not return_indices:
        return out
    idx = Tensor._make(box[0][0] if unbatched else box[0], x.device)
    return out, idx


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """2-D max pooling as ``torch.nn.functional.max_pool2d``; ``stride`` defaults to ``kernel_size``.

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, Ho, Wo). With ``return_indices`` also returns int64 indices
    into each flattened input plane (H*W), as torch does.
    """
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """1-D max pooling as ``torch.nn.functional.max_pool1d``: (N, C, L) or (C, L) -> (N, C, Lo)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def _avg_divisor(x: Tensor, geom: tuple, count_include_pad: bool, divisor_override: Any, nd: int) -> Any:
    """torch's per-window divisor: a float when every window has the same one, else an (Ho, Wo) nested list."""
    if divisor_override is not None:
        if not divisor_override or divisor_override < 0:
            raise ValueError(f"avg_pool{nd}d: divisor_override must be a positive number, got {divisor_override}")
        return float(divisor_override)
    k, s, _, p, out, _ = geom
    spatial = (1,) * (2 - nd) + tuple(x.shape[-nd:])
    per_axis = []
    for n, ki, si, pi, o in zip(spatial, k, s, p, out):
        counts = []
        for i in range(o):
            start = i * si - pi
            end = min(start + ki, n + pi)
            valid = min(end, n) - max(start, 0)
            counts.append(end - start if count_include_pad else max(valid, 1))  # an all-padding window sums to 0
        per_axis.append(counts)
    rows, cols = per_axis
    if len(set(rows)) == 1 and len(set(cols)) == 1:
        return float(rows[0] * cols[0])
    return [[float(r * c) for c in cols] for r in rows]


def _avg_pool(x: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool, count_include_pad: bool,
              divisor_override: Any, nd: int, op: str) -> Tensor:
    geom = _pool_geom(x, kernel_size, stride, padding, 1, ceil_mode, nd, op)
    divisor = _avg_divisor(x, geom, count_include_pad, divisor_override, nd)
    unbatched = _unbatched(x, nd)
    out = AvgPool.apply(unsqueeze(x, 0) if unbatched else x, geom, divisor)
    return squeeze(out, 0) if unbatched else out


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Any = None) -> Tensor:
    """2-D average pooling as ``torch.nn.functional.avg_pool2d`` (same divisor rules at the borders)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                     "avg_pool2d")


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """1-D average pooling as ``torch.nn.functional.avg_pool1d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def _adaptive_avg_pool(x: Tensor, output_size: Any, nd: int, op: str) -> Tensor:
    _check_input(x, nd, op)
    spatial = tuple(x.shape[-nd:])
    if isinstance(output_size, int) or output_size is None:
        output_size = (output_size,) * nd
    output_size = tuple(n if o is None else o for o, n in zip(output_size, spatial))
    if len(output_size) != nd or not all(isinstance(o, int) and o >= 1 for o in output_size):
        raise ValueError(f"{op}: output_size must be a positive int or a tuple of {nd} (ints or None), "
                         f"got {output_size!r}")
    if min(spatial) < 1:
        raise RuntimeError(f"{op}: input of shape {tuple(x.shape)} has an empty spatial dimension")
    unbatched = _unbatched(x, nd)
    out = AdaptiveAvgPool.apply(unsqueeze(x, 0) if unbatched else x, output_size)
    return squeeze(out, 0) if unbatched else out


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a fixed (Ho, Wo) with torch's bins (also when Ho does not divide H)."""
    return _adaptive_avg_pool(input, output_size, 2, "adaptive_avg_pool2d")


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling of (N, C, L) to a fixed length with torch's bins."""
    return _adaptive_avg_pool(input, output_size, 1, "adaptive_avg_pool1d")
