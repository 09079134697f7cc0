"""Recurrent layers as fused Functions: one Function runs a whole layer (one direction) over all timesteps.

The input projection of every timestep is one GEMM; the time loop does one small GEMM ``h @ W_hh^T`` plus a
handful of in-place elementwise passes per step. Backward is hand-written backpropagation through time: the
per-step loop only carries the recurrent gradient; factors that need no recurrence are computed for all steps
at once, and the weight gradients are single GEMMs over all steps.

Each Function returns one packed array (autograd nodes have one output) of shape ``(T + 1 [+ 1], B, H)``:

    forward direction:  [h_0, h_1 .. h_T (, c_T)]     outputs are rows 1..T, h_n is row T
    reverse direction:  [h_1 .. h_T, h_0 (, c_T)]     outputs are rows 0..T-1, h_n is row 0

so the hidden state preceding time ``t`` (``h_prev``) is row ``t`` (forward) or ``t + 1`` (reverse), and all
of them form a view (the copy of ``h_0`` passes its gradient on to ``h_0``). ``unpack`` turns the packed tensor
into ``(output, h_n[, c_n])`` tensors.

LSTM has a compiled path (float32, numba installed; ``backend.kernels_for``): per step one GEMM
``[W_ih | W_hh] @ [x_t | h_prev]^T`` (input projection included) and one kernel
(``backend/numba_rnn_kernels.py``) that does the bias, the gate activations and the cell and hidden state in
one pass, and the matching kernel in backward (which also sums the bias grad). Batch rows never
interact, so each core runs the whole time loop over its own share of the batch with single-threaded BLAS:
the shares meet once per layer instead of at every step's small GEMM (on a busy 2-core machine, BLAS threads
meeting 128 times per layer made a training step several times slower). The NumPy path below stays for
float64, for ``NNFORGE_FAST_KERNELS=0`` and for machines without numba; the tests run both.

On the NumPy path sigmoids are computed as ``0.5 * tanh(0.5 * a) + 0.5`` (one transcendental pass, no
overflow), with the 0.5 folded into internal copies of the weights so each step needs a single ``tanh`` over
its gates.
Gate layouts follow torch: LSTM rows (i, f, g, o), GRU rows (r, z, n).
"""
from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..tensor import Tensor

_MIN_SHARE_ROWS = 8  # fewest batch rows per core's share in the compiled LSTM path


class _Layer(Function):
    """Shared pieces: shape checks, input projection, packed state buffers, the final GEMMs of backward."""

    gates = 1
    uses_output = True

    def _check(self, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, states: tuple) -> int:
        name = type(self).__name__
        H = w_hh.shape[1]
        if x.ndim != 3 or x.shape[2] != w_ih.shape[1]:
            raise RuntimeError(f"{name}: expected input of shape (L, N, {w_ih.shape[1]}), got {tuple(x.shape)}")
        if w_ih.shape[0] != self.gates * H or w_hh.shape[0] != self.gates * H:
            raise RuntimeError(f"{name}: weights of shapes {tuple(w_ih.shape)} and {tuple(w_hh.shape)} do not "
                               f"hold {self.gates} gates of hidden size {H}")
        dts = {x.dtype, w_ih.dtype, w_hh.dtype} | ({b_ih.dtype} if b_ih is not None else set())
        if len(dts) != 1:
            raise RuntimeError(f"{name}: input and weights must have the same dtype, got {sorted(map(str, dts))}")
        for s in states:
            if s is not None and s.shape != (x.shape[1], H):
                raise RuntimeError(f"{name}: expected state of shape {(x.shape[1], H)}, got {tuple(s.shape)}")
        return H

    def _project(self, x: Any, w: Any, bias: Any) -> Any:
        """(T, B, I) @ W^T + bias -> (T, B, G): one GEMM for all timesteps."""
        T, B, _ = x.shape
        gx = self.backend.xp.matmul(x.reshape(T * B, -1), w.T)
        if bias is not None:
            gx += bias
        return gx.reshape(T, B, -1)

    def _buffer(self, x: Any, s0: Any, H: int, extra: int, reverse: bool) -> Any:
        """Packed (T + 1 + extra, B, H) buffer holding the initial state at its row."""
        T, B, _ = x.shape
        buf = self.backend.xp.empty((T + 1 + extra, B, H), dtype=x.dtype)
        buf[T if reverse else 0] = 0 if s0 is None else s0
        return buf

    @staticmethod
    def _steps(T: int, reverse: bool) -> list:
        """(time index, row of h_t, row of h_prev) in processing order."""
        if reverse:
            return [(t, t, t + 1) for t in range(T - 1, -1, -1)]
        return [(t, t + 1, t) for t in range(T)]

    def _grads(self, dgx: Any, dgh: Any, x: Any, w_ih: Any, hprev: Any, has_bias: bool) -> list:
        """Grads of (x, W_ih, W_hh, b_ih, b_hh) from the pre-activation grads (T, B, G) of the input side
        (``dgx``) and the hidden side (``dgh``, the same array when every gate sees both)."""
        xp = self.backend.xp
        need = self.needs_input_grad
        T, B, G = dgx.shape
        dgx2 = dgx.reshape(T * B, G)
        dgh2 = dgh.reshape(T * B, G)
        dx = xp.matmul(dgx2, w_ih).reshape(x.shape) if need[0] else None
        dw_ih = xp.matmul(dgx2.T, x.reshape(T * B, -1)) if need[1] else None
        dw_hh = xp.matmul(dgh2.T, hprev.reshape(T * B, -1)) if need[2] else None
        db_ih = dgx2.sum(axis=0) if has_bias and need[3] else None
        db_hh = None
        if has_bias and need[4]:
            db_hh = db_ih if dgh is dgx and db_ih is not None else dgh2.sum(axis=0)
        return [dx, dw_ih, dw_hh, db_ih, db_hh]


class RNNLayer(_Layer):
    """Elman RNN layer: apply(x (T,B,I), w_ih (H,I), w_hh (H,H), b_ih, b_hh, h0, reverse=, relu=)."""

    def forward(self, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, reverse: bool = False,
                relu: bool = False) -> Any:
        xp = self.backend.xp
        H = self._check(x, w_ih, w_hh, b_ih, (h0,))
        T, B, _ = x.shape
        gx = self._project(x, w_ih, None if b_ih is None else b_ih + b_hh)
        buf = self._buffer(x, h0, H, 0, reverse)
        whh_t = w_hh.T
        rec = xp.empty((B, H), dtype=x.dtype)
        for t, row, prev in self._steps(T, reverse):
            a = gx[t]
            xp.matmul(buf[prev], whh_t, out=rec)
            a += rec
            if relu:
                xp.maximum(a, 0, out=buf[row])
            else:
                xp.tanh(a, out=buf[row])
        self.saved = (x, w_ih, w_hh, buf)
        self.args = (reverse, relu, b_ih is not None)
        return buf

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        x, w_ih, w_hh, buf = self.saved
        reverse, relu, has_bias = self.args
        T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
        out, hprev = (buf[:T], buf[1:]) if reverse else (buf[1:], buf[:T])
        fac = (out > 0).astype(out.dtype) if relu else 1 - out * out  # d h / d pre, all steps at once
        dpre = xp.empty((T, B, H), dtype=buf.dtype)
        dh = xp.zeros((B, H), dtype=buf.dtype)
        for t, row, _ in reversed(self._steps(T, reverse)):
            dh += g[row]
            xp.multiply(dh, fac[t], out=dpre[t])
            xp.matmul(dpre[t], w_hh, out=dh)
        dh += g[T if reverse else 0]  # the packed output's copy of h_0
        grads = self._grads(dpre, dpre, x, w_ih, hprev, has_bias)
        return (*grads, dh if self.needs_input_grad[5] else None)


class LSTMLayer(_Layer):
    """LSTM layer: apply(x (T,B,I), w_ih (4H,I), w_hh (4H,H), b_ih, b_hh, h0, c0, reverse=).

    Packed output has one extra row, ``c_T``."""

    gates = 4

    def forward(self, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, c0: Any,
                reverse: bool = False) -> Any:
        xp = self.backend.xp
        H = self._check(x, w_ih, w_hh, b_ih, (h0, c0))
        T, B, _ = x.shape
        k = self.backend.kernels_for(w_ih, w_hh, b_ih, b_hh)
        self.fast = k is not None
        if k is not None:
            return self._forward_fast(k, x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse, H)
        # internal gate order (i, f, o, g) so the sigmoid gates are contiguous; their rows are pre-scaled by 0.5
        perm = xp.concatenate([xp.arange(2 * H), xp.arange(3 * H, 4 * H), xp.arange(2 * H, 3 * H)])
        scale = xp.ones((4 * H, 1), dtype=x.dtype)
        scale[:3 * H] = 0.5
        bias = None if b_ih is None else (b_ih + b_hh)[perm] * scale[:, 0]
        gates = self._project(x, w_ih[perm] * scale, bias)  # (T, B, 4H), becomes the activated gates
        whh_t = (w_hh[perm] * scale).T  # (H, 4H)
        buf = self._buffer(x, h0, H, 1, reverse)
        cbuf = self._buffer(x, c0, H, 0, reverse)  # cell states, same packing as the hidden states
        tanh_c = xp.empty((T, B, H), dtype=x.dtype)
        rec = xp.empty((B, 4 * H), dtype=x.dtype)
        tmp = xp.empty((B, H), dtype=x.dtype)
        for t, row, prev in self._steps(T, reverse):
            a = gates[t]
            xp.matmul(buf[prev], whh_t, out=rec)
            a += rec
            xp.tanh(a, out=a)
            s = a[:, :3 * H]  # tanh(pre/2) -> sigmoid(pre)
            s *= 0.5
            s += 0.5
            c = cbuf[row]
            xp.multiply(a[:, H:2 * H], cbuf[prev], out=c)  # f * c_prev
            xp.multiply(a[:, :H], a[:, 3 * H:], out=tmp)  # i * g
            c += tmp
            xp.tanh(c, out=tanh_c[t])
            xp.multiply(a[:, 2 * H:3 * H], tanh_c[t], out=buf[row])  # o * tanh(c)
        buf[T + 1] = cbuf[0 if reverse else T]
        self.saved = (x, w_ih, w_hh, perm, gates, cbuf, tanh_c, buf)
        self.args = (reverse, b_ih is not None)
        return buf

    def _forward_fast(self, k: Any, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, c0: Any,
                      reverse: bool, H: int) -> Any:
        """Compiled path: per step one GEMM ``[W_ih | W_hh] @ [x_t | h_prev]^T`` (the input projection rides
        along, so no projection of all steps is written out and read back cold) and one kernel for everything
        else (bias, gate activations, cell and hidden state), gates in torch's order.

        Batch rows never interact, so each core runs the whole time loop over its own share of the batch
        (``_shares``), in arrays of its own: ``xh`` (T, n, I + H) holds each step's ``[x_t | h_prev]`` row,
        so that backward's weight grads for the share are one GEMM on the same core."""
        xp = self.backend.xp
        T, B, I = x.shape
        G = 4 * H
        w_cat = xp.concatenate([w_ih, w_hh], axis=1)  # (4H, I + H)
        bias = xp.zeros(G, dtype=x.dtype) if b_ih is None else b_ih + b_hh
        steps = self._steps(T, reverse)
        # (t, row of h_t, row of h_prev, the next step's t, whether there is one): h_t also goes into xh[next]
        plan = [(t, row, prev, steps[i + 1][0] if i + 1 < T else t, i + 1 < T)
                for i, (t, row, prev) in enumerate(steps)]
        buf = self._buffer(x, h0, H, 1, reverse)
        shares = self._shares(k, B)
        parts: list = [None] * len(shares)
        step = k.lstm_forward_step
        first, last = (T, 0) if reverse else (0, T)  # rows of the initial and the final state

        def run(s: int) -> None:
            sl = shares[s]
            n = sl.stop - sl.start
            xh = xp.empty((T, n, I + H), dtype=x.dtype)
            xh[:, :, :I] = x[:, sl]
            if T:
                xh[steps[0][0], :, I:] = buf[first, sl]
            gates = xp.empty((T, n, G), dtype=x.dtype)
            cbuf = xp.empty((T + 1, n, H), dtype=x.dtype)  # cell states, packed like the hidden states
            cbuf[first] = 0 if c0 is None else c0[sl]
            tanh_c = xp.empty((T, n, H), dtype=x.dtype)
            pre_t = xp.empty((G, n), dtype=x.dtype)
            for t, row, prev, nxt, has_next in plan:
                xp.matmul(w_cat, xh[t].T, out=pre_t)
                step(pre_t, bias, gates[t], cbuf[prev], cbuf[row], tanh_c[t], buf[row, sl], xh[nxt], I, has_next)
            buf[T + 1, sl] = cbuf[last]
            parts[s] = (xh, gates, cbuf, tanh_c)

        self._run_shares(shares, run)
        self.saved = (w_ih, w_hh, parts)
        self.args = (reverse, b_ih is not None, shares, x.dtype)
        return buf

    def _shares(self, k: Any, B: int) -> list:
        """The batch rows each core takes (slices): one share per core, no more than the BLAS thread limit
        allows, none under ``_MIN_SHARE_ROWS`` rows; a single share for small batches."""
        cores = min(self.backend.num_threads, k.blas_thread_limit())
        n = min(cores, B // _MIN_SHARE_ROWS)
        if n < 2:
            return [slice(0, B)]
        bounds = [B * i // n for i in range(n + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(n)]

    def _run_shares(self, shares: list, run: Any) -> None:
        """``run(share index)`` for every share: concurrently, one per core, with single-threaded BLAS (the
        shares meet once, at the end, not at every timestep's small GEMM), or directly for a single share."""
        if len(shares) == 1:
            run(0)
            return

        def some(sl: slice) -> None:
            for s in range(sl.start, sl.stop):
                run(s)

        self.backend.parallel_for(len(shares), some)

    def _backward_fast(self, g: Any) -> tuple:
        xp = self.backend.xp
        w_ih, w_hh, parts = self.saved
        reverse, has_bias, shares, dt = self.args
        need = self.needs_input_grad
        T, _, G = parts[0][1].shape
        B, H, I = shares[-1].stop, G // 4, w_ih.shape[1]
        g = xp.ascontiguousarray(g, dtype=dt)
        dx = xp.empty((T, B, I), dtype=dt) if need[0] else None
        dh0 = xp.empty((B, H), dtype=dt)
        dc0 = xp.empty((B, H), dtype=dt)
        dws: list = [None] * len(shares)
        dbiases: list = [None] * len(shares)
        step = self.backend.kernels_for(g).lstm_backward_step
        steps = list(reversed(self._steps(T, reverse)))
        first = T - 1 if reverse else 0  # the step that read h_0

        def run(s: int) -> None:
            sl = shares[s]
            n = sl.stop - sl.start
            xh, gates, cbuf, tanh_c = parts[s]
            dpre = xp.empty((T, n, G), dtype=dt)
            dh = xp.zeros((n, H), dtype=dt)  # recurrent grad of the current step's h
            dc = g[T + 1, sl].copy()  # grad of the cell state, carried back through the steps in place
            dbias = xp.zeros(G, dtype=dt)
            for t, row, prev in steps:
                step(g[row, sl], dh, dc, gates[t], cbuf[prev], tanh_c[t], dpre[t], dbias)
                if t != first or need[5]:
                    xp.matmul(dpre[t], w_hh, out=dh)
            d2 = dpre.reshape(T * n, G)
            if need[0]:
                dx[:, sl] = xp.matmul(d2, w_ih).reshape(T, n, I)
            if need[1] or need[2]:
                dws[s] = xp.matmul(d2.T, xh.reshape(T * n, I + H))  # [dW_ih | dW_hh] of this share
            dbiases[s] = dbias
            dh0[sl] = dh
            dc0[sl] = dc

        self._run_shares(shares, run)
        dw_ih = dw_hh = None
        if need[1] or need[2]:
            dw = dws[0] if len(dws) == 1 else xp.sum(dws, axis=0)
            dw_ih = xp.ascontiguousarray(dw[:, :I]) if need[1] else None
            dw_hh = xp.ascontiguousarray(dw[:, I:]) if need[2] else None
        dbias = dbiases[0] if len(dbiases) == 1 else xp.sum(dbiases, axis=0)
        db_ih = dbias if has_bias and need[3] else None
        db_hh = dbias.copy() if has_bias and need[4] else None
        if need[5]:
            dh0 += g[T if reverse else 0]  # the packed output's copy of h_0
        return dx, dw_ih, dw_hh, db_ih, db_hh, (dh0 if need[5] else None), (dc0 if need[6] else None)

    def backward(self, g: Any) -> tuple:
        if self.fast:
            return self._backward_fast(g)
        xp = self.backend.xp
        x, w_ih, w_hh, perm, gates, cbuf, tanh_c, buf = self.saved
        reverse, has_bias = self.args
        T, B, G = gates.shape
        H = G // 4
        hprev, cprev = (buf[1:T + 1], cbuf[1:]) if reverse else (buf[:T], cbuf[:T])
        i, f, o, gg = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H], gates[..., 3 * H:]
        # the parts of backward without recurrence, for all steps at once:
        #   dc_t += dh_t * o * (1 - tanh(c)^2)
        #   d pre(i, f, o, g) = [dc * g*i(1-i), dc * c_prev*f(1-f), dh * tanh(c)*o(1-o), dc * i*(1-g^2)]
        dc_fac = 1 - tanh_c * tanh_c
        dc_fac *= o
        fac = xp.empty((T, B, 4, H), dtype=gates.dtype)
        xp.multiply(gg, i * (1 - i), out=fac[:, :, 0])
        xp.multiply(cprev, f * (1 - f), out=fac[:, :, 1])
        xp.multiply(tanh_c, o * (1 - o), out=fac[:, :, 2])
        xp.multiply(i, 1 - gg * gg, out=fac[:, :, 3])
        dpre = xp.empty((T, B, 4, H), dtype=gates.dtype)
        whh_p = w_hh[perm]  # (4H, H), internal order, unscaled
        dh = xp.zeros((B, H), dtype=gates.dtype)
        dc = g[T + 1].copy()
        tmp = xp.empty((B, H), dtype=gates.dtype)
        for t, row, _ in reversed(self._steps(T, reverse)):
            dh += g[row]
            xp.multiply(dh, dc_fac[t], out=tmp)
            dc += tmp
            d = dpre[t]
            xp.multiply(dc, fac[t, :, 0], out=d[:, 0])
            xp.multiply(dc, fac[t, :, 1], out=d[:, 1])
            xp.multiply(dh, fac[t, :, 2], out=d[:, 2])
            xp.multiply(dc, fac[t, :, 3], out=d[:, 3])
            dc *= f[t]
            xp.matmul(d.reshape(B, G), whh_p, out=dh)
        dh += g[T if reverse else 0]  # the packed output's copy of h_0
        dpre = dpre.reshape(T, B, G)
        grads = self._grads(dpre, dpre, x, w_ih[perm], hprev, has_bias)
        inv = xp.argsort(perm)  # internal gate order back to torch's
        grads = [gr if gr is None or k == 0 else gr[inv] for k, gr in enumerate(grads)]
        need = self.needs_input_grad
        return (*grads, dh if need[5] else None, dc if need[6] else None)


class GRULayer(_Layer):
    """GRU layer (torch's formulation, r applied after the hidden GEMM):
    apply(x (T,B,I), w_ih (3H,I), w_hh (3H,H), b_ih, b_hh, h0, reverse=)."""

    gates = 3

    def forward(self, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, reverse: bool = False) -> Any:
        xp = self.backend.xp
        H = self._check(x, w_ih, w_hh, b_ih, (h0,))
        T, B, _ = x.shape
        scale = xp.ones((3 * H, 1), dtype=x.dtype)
        scale[:2 * H] = 0.5  # r, z rows: sigmoid through tanh
        bias = b_hn = None
        if b_ih is not None:
            bias = b_ih.copy()
            bias[:2 * H] += b_hh[:2 * H]
            bias *= scale[:, 0]
            b_hn = b_hh[2 * H:]
        gates = self._project(x, w_ih * scale, bias)  # (T, B, 3H), becomes (r, z, n)
        whh_t = (w_hh * scale).T  # (H, 3H)
        buf = self._buffer(x, h0, H, 0, reverse)
        ghn = xp.empty((T, B, H), dtype=x.dtype)  # W_hn h_prev + b_hn, needed by backward
        rec = xp.empty((B, 3 * H), dtype=x.dtype)
        for t, row, prev in self._steps(T, reverse):
            a = gates[t]
            xp.matmul(buf[prev], whh_t, out=rec)
            rz = a[:, :2 * H]
            rz += rec[:, :2 * H]
            xp.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            if b_hn is None:
                ghn[t] = rec[:, 2 * H:]
            else:
                xp.add(rec[:, 2 * H:], b_hn, out=ghn[t])
            n = a[:, 2 * H:]
            xp.multiply(a[:, :H], ghn[t], out=rec[:, :H])
            n += rec[:, :H]
            xp.tanh(n, out=n)
            h = buf[row]
            xp.subtract(buf[prev], n, out=h)  # h = n + z * (h_prev - n)
            h *= a[:, H:2 * H]
            h += n
        self.saved = (x, w_ih, w_hh, gates, ghn, buf)
        self.args = (reverse, b_ih is not None)
        return buf

    def backward(self, g: Any) -> tuple:
        xp = self.backend.xp
        x, w_ih, w_hh, gates, ghn, buf = self.saved
        reverse, has_bias = self.args
        T, B, G = gates.shape
        H = G // 3
        hprev = buf[1:] if reverse else buf[:T]
        r, z, n = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
        # without recurrence, all steps at once:
        #   d pre_n = dh * (1-z)(1-n^2);  d pre_z = dh * (h_prev - n) z(1-z);  d pre_r = d pre_n * ghn r(1-r)
        #   hidden side of n: d ghn = d pre_n * r;  direct path: dh_prev += dh * z
        fac_n = 1 - n * n
        fac_n *= 1 - z
        fac_z = hprev - n
        fac_z *= z * (1 - z)
        fac_r = r * (1 - r)
        fac_r *= ghn
        dgh = xp.empty((T, B, G), dtype=gates.dtype)  # hidden-side pre-activation grads
        dxn = xp.empty((T, B, H), dtype=gates.dtype)  # input-side grad of the n gate
        dh = xp.zeros((B, H), dtype=gates.dtype)
        rec = xp.empty((B, H), dtype=gates.dtype)
        for t, row, _ in reversed(self._steps(T, reverse)):
            dh += g[row]
            d = dgh[t]
            xp.multiply(dh, fac_n[t], out=dxn[t])
            xp.multiply(dh, fac_z[t], out=d[:, H:2 * H])
            xp.multiply(dxn[t], fac_r[t], out=d[:, :H])
            xp.multiply(dxn[t], r[t], out=d[:, 2 * H:])
            dh *= z[t]
            xp.matmul(d, w_hh, out=rec)
            dh += rec
        dh += g[T if reverse else 0]  # the packed output's copy of h_0
        dgx = dgh.copy()
        dgx[..., 2 * H:] = dxn
        grads = self._grads(dgx, dgh, x, w_ih, hprev, has_bias)
        return (*grads, dh if self.needs_input_grad[5] else None)


def unpack(packed: Tensor, T: int, reverse: bool, cell: bool = False) -> tuple:
    """Split a layer's packed output into ``(output (T, B, H), h_n (B, H)[, c_n (B, H)])``."""
    out = packed[0:T] if reverse else packed[1:T + 1]
    h_n = packed[0] if reverse else packed[T]
    return (out, h_n, packed[T + 1]) if cell else (out, h_n)
