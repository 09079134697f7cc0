"""``Reducer``: averages parameter gradients across ranks with bucketed all-reduces that start while backward
is still running (the engine behind ``DistributedDataParallel``; torch's C++ Reducer in ~150 lines).

Parameters are grouped, in reverse registration order (roughly the order backward produces their gradients),
into buckets of at most ``bucket_cap_mb``, one flat buffer per bucket. A hook on each parameter copies its
gradient into its slot (plus the gradient already accumulated there, e.g. under ``no_sync``); when every slot of
a bucket is filled the bucket's ``Iallreduce`` starts, always in bucket order so every rank issues the same
sequence of collectives. At the end of backward (an engine callback) the remaining buckets are sent with the
slots of parameters that got no gradient filled from ``.grad`` or zeros, one small message agrees on which
parameters have a gradient on any rank and whether a bucket needs resending (a parameter that received a second
gradient after its bucket left: shared weights), and each ``.grad`` becomes its averaged slot (a fresh array).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ..autograd.engine import queue_callback
from ..tensor import Tensor
from .process_group import _comm, _mpi, _wait, get_world_size


class _Bucket:
    __slots__ = ("buf", "count", "index", "offsets", "params", "request")

    def __init__(self, index: int, params: list, dtype: Any) -> None:
        self.index, self.params = index, params  # params: indices into Reducer.params
        self.offsets, self.count, self.request = [], 0, None
        self.buf = np.empty(0, dtype=dtype)


class Reducer:
    """Average the gradients of ``params`` (trainable leaf tensors on the CPU) over all ranks after each
    backward pass; ``enabled = False`` skips it (gradients then just accumulate locally)."""

    def __init__(self, params: list, bucket_cap_mb: float = 25.0) -> None:
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        for p in params:
            if not isinstance(p.data, np.ndarray):
                raise TypeError(f"DistributedDataParallel: only CPU tensors can be reduced over MPI, got a "
                                f"parameter on {p.device}")
        self.params = params
        self.enabled = True
        cap = int(bucket_cap_mb * 2 ** 20)
        self.buckets: list = []
        self._where: list = [None] * len(params)  # param index -> (bucket, slot start, slot end)
        for i in reversed(range(len(params))):
            p = params[i]
            b = self.buckets[-1] if self.buckets else None
            if b is None or b.buf.dtype != p.dtype or (b.offsets and b.offsets[-1] + p.numel() > cap // p.dtype.itemsize):
                b = _Bucket(len(self.buckets), [], p.dtype)
                self.buckets.append(b)
            start = b.offsets[-1] if b.offsets else 0
            b.params.append(i)
            b.offsets.append(start + p.numel())
            self._where[i] = (b, start, start + p.numel())
        for b in self.buckets:
            b.buf = np.empty(b.offsets[-1], dtype=b.buf.dtype)
        self._ready = [False] * len(params)
        self._dirty = [False] * len(self.buckets)
        self._next = 0  # first bucket not yet sent
        self._active = False  # inside a backward pass that will be reduced
        self._handles = [p.register_hook(partial(self._on_grad, i)) for i, p in enumerate(params)]

    def remove(self) -> None:
        """Detach the gradient hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- during backward ---------------------------------------------------------------------------------------
    def _begin(self) -> None:
        self._active = True
        self._ready = [False] * len(self.params)
        self._dirty = [False] * len(self.buckets)
        self._next = 0
        for b in self.buckets:
            b.count, b.request = 0, None
        queue_callback(self._finalize)

    def _on_grad(self, i: int, g: Tensor) -> None:
        if not self.enabled:
            return
        if not self._active:
            self._begin()
        b, lo, hi = self._where[i]
        slot = b.buf[lo:hi]
        grad = g.data.reshape(-1)
        if self._ready[i]:  # another gradient for a parameter used twice
            if b.request is not None:
                self._dirty[b.index] = True  # already on the wire: resend from .grad at the end
            else:
                slot += grad
            return
        self._ready[i] = True
        p = self.params[i]
        if p.grad is None:
            np.copyto(slot, grad)
        else:
            np.add(p.grad.data.reshape(-1), grad, out=slot)
        b.count += 1
        if b.count == len(b.params):
            self._launch_ready()
        elif self._next:
            _mpi().Request.Testall([x.request for x in self.buckets[:self._next]])  # drive MPI's progress
        return

    def _launch_ready(self) -> None:
        while self._next < len(self.buckets) and self.buckets[self._next].count == len(self.buckets[self._next].params):
            self._launch(self.buckets[self._next])
            self._next += 1

    def _launch(self, b: _Bucket) -> None:
        MPI = _mpi()
        b.request = _comm().Iallreduce(MPI.IN_PLACE, b.buf, MPI.SUM)

    def _fill_from_grad(self, i: int) -> None:
        b, lo, hi = self._where[i]
        g = self.params[i].grad
        if g is None:
            b.buf[lo:hi] = 0
        else:
            np.copyto(b.buf[lo:hi], g.data.reshape(-1))

    # -- after backward ----------------------------------------------------------------------------------------
    def _finalize(self) -> None:
        self._active = False
        for b in self.buckets[self._next:]:
            for i in b.params:
                if not self._ready[i]:
                    self._fill_from_grad(i)
            b.count = len(b.params)
        self._launch_ready()
        MPI = _mpi()
        # which parameters have a gradient on some rank, which buckets must be sent again: one small message
        flags = np.array([p.grad is not None for p in self.params] + self._dirty, dtype=np.int32)
        _wait(_comm().Iallreduce(MPI.IN_PLACE, flags, MPI.MAX), "DistributedDataParallel gradient flags")
        for b in self.buckets:
            _wait(b.request, f"DistributedDataParallel gradient all-reduce (bucket {b.index}, {b.buf.size} "
                             f"{b.buf.dtype} values)")
        n = len(self.params)
        for b in self.buckets:
            if flags[n + b.index]:
                for i in b.params:
                    self._fill_from_grad(i)
                _wait(_comm().Iallreduce(MPI.IN_PLACE, b.buf, MPI.SUM),
                      f"DistributedDataParallel gradient all-reduce (bucket {b.index}, resent)")
        inv = 1.0 / get_world_size()
        for i, p in enumerate(self.params):
            if flags[i]:
                b, lo, hi = self._where[i]
                avg = np.multiply(b.buf[lo:hi], b.buf.dtype.type(inv)).reshape(p.shape)
                p.grad = Tensor._make(avg, p._device)
