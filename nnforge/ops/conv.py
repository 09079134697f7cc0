"""Convolution (conv1d, conv2d): im2col + one GEMM per group, hand-written backward.

Layout: the API is NCHW (torch's), but the work is done channels-last. The input is copied once into a
zero-padded (N, Hp, Wp, C) buffer, a strided view of it, (N, Ho, Wo, G, kh, kw, Cg), is copied into the
im2col matrix (N*Ho*Wo, G, kh*kw*Cg), and one GEMM per group gives (N*Ho*Wo, O): that *is* the output in
channels-last memory, returned as an (N, O, Ho, Wo) view without a transposing copy (like a torch tensor in
``torch.channels_last`` memory format: ``reshape``/``flatten`` work, ``view(N, -1)`` does not).
Elementwise ops keep that layout, and the next convolution (or pooling) reads it without a transpose.

Backward: grad_weight = cols^T @ grad_out (cols kept from forward only when the weight needs a gradient),
grad_input = col2im(grad_out @ W^T), accumulated with one strided add per kernel offset (kh*kw adds).
conv1d is conv2d with H = 1.

Compiled path (float32, groups = 1, numba installed; ``backend.kernels_for``): no padded copy and no whole
im2col matrix. Per core, a few images at a time: compiled im2col writes their rows into a scratch buffer that
stays in cache (with a column of ones, so that the GEMM also adds the bias) and one GEMM writes their output
rows. Backward recomputes each chunk's im2col for the weight gradient (only the input is kept, not the
columns), and col2im is a compiled scatter-add. Inputs with at most 4 channels (the first layer) use the
transposed im2col matrix, whose writes run along output rows instead of over a handful of channels.
"""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..autograd.grad_mode import GRAD_ENABLED
from ..tensor import Tensor
from .shape import squeeze, unsqueeze


class Conv(Function):
    """x (N, C, [H,] W), weight (O, C/groups, [kh,] kw), bias (O,) or None -> (N, O, [Ho,] Wo)."""

    def forward(self, x: Any, w: Any, b: Any, stride: tuple, padding: tuple, dilation: tuple, groups: int,
                keep_cols: bool) -> Any:
        xp = self.backend.xp
        self.one_d = one_d = x.ndim == 3
        if one_d:
            x, w = x[:, :, None, :], w[:, :, None, :]
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G, Og, K = groups, O // groups, kh * kw * Cg
        (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, padding
        Hp, Wp = H + pt + pb, W + pl + pr
        Ho, Wo = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
        M = N * Ho * Wo
        kernels = self.backend.kernels_for(w, b) if G == 1 and x.dtype == w.dtype else None
        if kernels is not None:  # compiled im2col per few images, in cache, each followed by its GEMM
            self.geom = (N, C, H, W, O, Cg, kh, kw, G, Ho, Wo, Hp, Wp, stride, dilation, padding)
            self.fast = (kernels, (kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo))
            wm = xp.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(K, O))  # (kh*kw*C, O), rows (i, j, c)
            out, x4 = kernels.conv2d(x.transpose(0, 2, 3, 1), wm, b, self.fast[1])
            self.saved = (x4 if keep_cols else None, wm)
            out = out.transpose(0, 3, 1, 2)
            return out[:, :, 0, :] if one_d else out

        xh = x.transpose(0, 2, 3, 1)  # (N, H, W, C): free when x is channels-last in memory
        if pt or pb or pl or pr:
            buf = xp.zeros((N, Hp, Wp, C), dtype=x.dtype)
            buf[:, pt:pt + H, pl:pl + W] = xh
            xh = buf
        elif C > 1 and not xh.flags.c_contiguous:
            xh = xp.ascontiguousarray(xh)  # one transposing copy, so that im2col reads runs of C values
        self.geom = (N, C, H, W, O, Cg, kh, kw, G, Ho, Wo, Hp, Wp, stride, dilation, padding)
        if Cg == 1 and G > 1:  # depthwise: kh*kw broadcast multiply-adds beat G tiny GEMMs
            wd = w.reshape(G, Og, kh * kw).transpose(2, 0, 1).copy()  # (kh*kw, C, multiplier)
            out = xp.zeros((N, Ho, Wo, G, Og), dtype=x.dtype)
            for k, v in enumerate(self._offsets(xh)):
                out += v[..., None] * wd[k]
            self.saved = (xh if keep_cols else None, wd)
        else:
            s0, s1, s2, s3 = xh.strides
            win = xp.lib.stride_tricks.as_strided(
                xh, (N, Ho, Wo, G, kh, kw, Cg), (s0, s1 * sh, s2 * sw, s3 * Cg, s1 * dh, s2 * dw, s3),
                writeable=False)
            # the im2col copy, split over the batch across cores (a strided copy runs on one core otherwise)
            cols = xp.empty((N, Ho, Wo, G, kh, kw, Cg), dtype=x.dtype)
            self.backend.parallel_for(N, lambda sl: xp.copyto(cols[sl], win[sl]),
                                      grain=max(1, N // (4 * self.backend.num_threads)))
            cols = cols.reshape(M, G, K)
            wm = w.reshape(G, Og, Cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(G, K, Og)  # (G, kh*kw*Cg, Og)
            if G == 1:
                out = xp.matmul(cols.reshape(M, K), wm[0])
            else:
                out = xp.empty((M, G, Og), dtype=x.dtype)
                xp.matmul(cols.transpose(1, 0, 2), wm, out=out.transpose(1, 0, 2))
            self.saved = (cols if keep_cols else None, wm)
        out = out.reshape(N, Ho, Wo, O)
        if b is not None:
            out += b
        out = out.transpose(0, 3, 1, 2)
        return out[:, :, 0, :] if one_d else out

    def _offsets(self, a: Any) -> list:
        """The kh*kw strided views (N, Ho, Wo, ...) of a padded channels-last array, one per kernel offset."""
        kh, kw, Ho, Wo = self.geom[6], self.geom[7], self.geom[9], self.geom[10]
        (sh, sw), (dh, dw) = self.geom[13], self.geom[14]
        return [a[:, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
                for i in range(kh) for j in range(kw)]

    fast = None  # (kernels, geometry) when forward took the compiled path

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        cols, wm = self.saved
        N, C, H, W, O, Cg, kh, kw, G, Ho, Wo, Hp, Wp, (sh, sw), _, (pt, _, pl, _) = self.geom
        Og, K, M = O // G, kh * kw * Cg, N * Ho * Wo
        need_x, need_w, need_b = self.needs_input_grad
        if self.one_d:
            g = g[:, :, None, :]
        if self.fast is not None:
            kernels, fgeom = self.fast
            gx, gw, gb = kernels.conv2d_grad(cols, wm, g.astype(xp.float32, copy=False).transpose(0, 2, 3, 1),
                                             (N, H, W, C), fgeom, need_x, need_w, need_b)
            if gw is not None:
                gw = xp.ascontiguousarray(gw.reshape(kh, kw, C, O).transpose(3, 2, 0, 1))
            if gx is not None:
                gx = gx.transpose(0, 3, 1, 2)
            if self.one_d:
                gx = None if gx is None else gx[:, :, 0, :]
                gw = None if gw is None else gw[:, :, 0, :]
            return gx, gw, gb
        gh = g.transpose(0, 2, 3, 1).reshape(M, G, Og)  # free when g is channels-last (it usually is)
        gx = gw = gb = None
        if need_b:
            gb = gh.reshape(M, O).sum(axis=0)
        if Cg == 1 and G > 1:
            gw, gx = self._depthwise_backward(xp, gh.reshape(N, Ho, Wo, G, Og), need_w, need_x)
        else:
            if need_w:
                gwm = _weight_grad(xp, cols, gh)  # (G, K, Og)
                gw = gwm.reshape(G, kh, kw, Cg, Og).transpose(0, 4, 3, 1, 2).reshape(O, Cg, kh, kw)
            if need_x and G == 1 and sh == sw == 1:
                gx = self._input_grad_stride1(xp, gh.reshape(N, Ho, Wo, O), wm[0])
            elif need_x:
                if G == 1:
                    gcols = xp.matmul(gh.reshape(M, O), wm[0].T)
                else:
                    gcols = xp.empty((M, G, K), dtype=g.dtype)
                    xp.matmul(gh.transpose(1, 0, 2), wm.transpose(0, 2, 1), out=gcols.transpose(1, 0, 2))
                gcols = gcols.reshape(N, Ho, Wo, G, kh * kw, Cg)
                gx = xp.zeros((N, Hp, Wp, G, Cg), dtype=g.dtype)
                for k, view in enumerate(self._offsets(gx)):  # col2im: one strided add per kernel offset
                    view += gcols[:, :, :, :, k, :]
        if gx is not None:
            gx = gx.reshape(N, Hp, Wp, C)[:, pt:pt + H, pl:pl + W].transpose(0, 3, 1, 2)
            if self.one_d:
                gx = gx[:, :, 0, :]
        if gw is not None and self.one_d:
            gw = gw[:, :, 0, :]
        return gx, gw, gb

    def _input_grad_stride1(self, xp: Any, gh: Any, wm: Any) -> Any:
        """col2im without strided reads, for stride 1: gh (N, Ho, Wo, O) is laid on a grid as wide as the
        padded input (extra columns zero), so the contribution of kernel offset (i, j) to the flattened
        padded input is one GEMM result shifted by (i*dh*Wp + j*dw) pixels: a contiguous add per offset.
        Returns the gradient of the padded input (N, Hp, Wp, C)."""
        N, Ho, Wo, O = gh.shape
        C, kh, kw, Hp, Wp, (dh, dw) = self.geom[1], self.geom[6], self.geom[7], self.geom[11], self.geom[12], \
            self.geom[14]
        wide = xp.zeros((N, Ho, Wp, O), dtype=gh.dtype)
        wide[:, :, :Wo] = gh
        wide = wide.reshape(N * Ho * Wp, O)
        run, size = Ho * Wp * C, Hp * Wp * C
        dx = xp.zeros((N, size + dw * (kw - 1) * C), dtype=gh.dtype)  # slack: the last row's spill (zeros)
        for i in range(kh):
            for j in range(kw):
                k, off = i * kw + j, (i * dh * Wp + j * dw) * C
                dx[:, off:off + run] += xp.matmul(wide, wm[k * C:(k + 1) * C].T).reshape(N, run)
        return dx[:, :size].reshape(N, Hp, Wp, C)

    def _depthwise_backward(self, xp: Any, gh: Any, need_w: bool, need_x: bool) -> tuple:
        """gh (N, Ho, Wo, C, multiplier) -> (grad weight (O, 1, kh, kw), grad of the padded input or None)."""
        xh, wd = self.saved
        N, C, O, kh, kw, Hp, Wp = (self.geom[i] for i in (0, 1, 4, 6, 7, 11, 12))
        gw = gx = None
        if need_w:
            gwd = xp.stack([xp.einsum("nhwc,nhwcm->cm", v, gh) for v in self._offsets(xh)])  # (kh*kw, C, m)
            gw = gwd.transpose(1, 2, 0).reshape(O, 1, kh, kw)
        if need_x:
            gx = xp.zeros((N, Hp, Wp, C), dtype=gh.dtype)
            for k, view in enumerate(self._offsets(gx)):
                view += xp.einsum("nhwcm,cm->nhwc", gh, wd[k])
        return gw, gx

def _weight_grad(xp: Any, cols: Any, gh: Any) -> Any:
    """sum_m cols[m, g, :]^T gh[m, g, :] -> (G, K, Og). When K*Og is small and M long, one GEMM is a skinny
    product with a huge inner dimension, which BLAS runs slowly (and threads badly): cut M into chunks of
    _ROWS, multiply them as a batch and sum the small partial products."""
    M, G, K = cols.shape
    Og = gh.shape[2]
    if K * Og >= _SKINNY or M < 2 * _ROWS:
        if G == 1:
            return xp.matmul(cols.reshape(M, K).T, gh.reshape(M, Og))[None]
        return xp.matmul(cols.transpose(1, 2, 0), gh.transpose(1, 0, 2))
    B, full = M // _ROWS, (M // _ROWS) * _ROWS
    c = cols[:full].reshape(B, _ROWS, G, K).transpose(0, 2, 3, 1)  # (B, G, K, R)
    h = gh[:full].reshape(B, _ROWS, G, Og).transpose(0, 2, 1, 3)  # (B, G, R, Og)
    out = xp.matmul(c, h).sum(axis=0)
    if full < M:
        out += xp.matmul(cols[full:].transpose(1, 2, 0), gh[full:].transpose(1, 0, 2))
    return out


_SKINNY, _ROWS = 4096, 1024


def ntuple(v: Any, n: int, name: str, op: Any) -> tuple:
    """An int or a length-``n`` sequence of ints as an ``n``-tuple (torch's ``_pair``)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v,) * n
    t = tuple(v) if isinstance(v, (tuple, list)) else None
    if t is None or len(t) != n or not all(isinstance(e, int) and not isinstance(e, bool) for e in t):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _conv_padding(padding: Any, k: tuple, dilation: tuple, stride: tuple, nd: int, op: Any) -> tuple:
    """Padding as (top, bottom, left, right); "same" pads dilation*(k-1) in total, the odd one on the
    bottom/right (as torch does for even kernels)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
        pads = []
        for ki, di in zip(k, dilation):
            total = di * (ki - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads) if nd == 2 else (0, 0) + tuple(pads)
    p = ntuple(padding, nd, "padding", op)
    if any(v < 0 for v in p):
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
    return (p[0], p[0], p[1], p[1]) if nd == 2 else (0, 0, p[0], p[0])


def conv_nd(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any, dilation: Any,
            groups: int, nd: int, name: Any) -> Tensor:
    """conv1d/conv2d with checks. ``name`` (the op's name, or the layer, formatted only when an error is
    raised) starts every error message."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{name}: input and weight must be Tensors, got {type(input).__name__} and "
                        f"{type(weight).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected a {nd + 2}-d (batched) or {nd + 1}-d (unbatched) input, got shape "
                           f"{tuple(input.shape)}")
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{name}: expected a {nd + 2}-d weight (out_channels, in_channels/groups, *kernel), "
                           f"got shape {tuple(weight.shape)}")
    if input.dtype.kind != "f" or input.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise RuntimeError(f"{name}: expected floating-point input, weight and bias of the same dtype, got "
                           f"{input.dtype}, {weight.dtype}" + (f", {bias.dtype}" if bias is not None else ""))
    if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{name}: groups={groups!r} must be a positive int dividing out_channels "
                         f"({weight.shape[0]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(f"{name}: expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    unbatched = input.ndim == nd + 1
    x = unsqueeze(input, 0) if unbatched else input
    channels = weight.shape[1] * groups
    if x.shape[1] != channels:
        raise RuntimeError(f"{name}: expected input with {channels} channels (weight of shape "
                           f"{tuple(weight.shape)}, groups={groups}), got shape {tuple(input.shape)}")
    k = tuple(weight.shape[2:])
    stride = ntuple(stride, nd, "stride", name)
    dilation = ntuple(dilation, nd, "dilation", name)
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        raise ValueError(f"{name}: stride and dilation must be positive, got stride={stride}, dilation={dilation}")
    pad4 = _conv_padding(padding, k, dilation, stride, nd, name)
    padded = (x.shape[2] + pad4[0] + pad4[1], x.shape[3] + pad4[2] + pad4[3]) if nd == 2 else \
        (x.shape[2] + pad4[2] + pad4[3],)
    extent = tuple(d * (ki - 1) + 1 for d, ki in zip(dilation, k))
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(f"{name}: input of shape {tuple(input.shape)} (padded spatial size {padded}) is smaller "
                           f"than the kernel {k} (dilated extent {extent})")
    s2 = stride if nd == 2 else (1,) + stride
    d2 = dilation if nd == 2 else (1,) + dilation
    keep_cols = weight.requires_grad and GRAD_ENABLED[0]
    out = Conv.apply(x, weight, bias, stride=s2, padding=pad4, dilation=d2, groups=groups, keep_cols=keep_cols)
    return squeeze(out, 0) if unbatched else out


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    Shape: input (N, C, H, W) or (C, H, W); weight (O, C/groups, kh, kw); out (N, O, Ho, Wo). ``padding``
    is an int, a pair, "valid" or "same". The output is channels-last in memory (see the module docstring).

    >>> y = conv2d(nf.randn(2, 3, 8, 8), nf.randn(4, 3, 3, 3), padding="same")   # (2, 4, 8, 8)
    """
    return conv_nd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-D convolution as ``torch.nn.functional.conv1d``: input (N, C, L) or (C, L), weight (O, C/groups, k)."""
    return conv_nd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")
