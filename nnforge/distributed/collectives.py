"""Collectives on tensors: in place on each tensor's array, through mpi4py's buffer calls (``Allreduce``,
``Bcast``, ``Allgather`` on NumPy buffers, never the pickling lowercase calls). Host-side communication code,
so it uses NumPy directly."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor
from .process_group import _comm, _mpi, _wait, get_world_size

__all__ = ["ReduceOp", "all_gather", "all_reduce", "barrier", "broadcast"]


class ReduceOp:
    """Reduction names accepted by ``all_reduce`` (torch-style constants; plain strings work too)."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


def _op(op: str) -> Any:
    MPI = _mpi()
    ops = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "product": MPI.PROD}
    name = str(op).lower()
    if name not in ops:
        raise ValueError(f"all_reduce: unknown op {op!r}; expected one of {sorted(ops)}")
    return ops[name]


def _check(t: Any, what: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(t).__name__}")


def _host(t: Tensor) -> np.ndarray:
    """A C-contiguous host array holding ``t``'s values: ``t.data`` itself when it already is one."""
    a = t._backend.to_numpy(t.data)
    return a if a.flags.c_contiguous and a.flags.writeable else np.ascontiguousarray(a)


def _store(t: Tensor, buf: np.ndarray) -> None:
    """Write ``buf`` back into ``t`` when it was a copy; count the in-place change."""
    if buf is not t.data:
        t.data[...] = t._backend.asarray(buf)
    t._version[0] += 1


def _meet(what: str) -> None:
    """Wait (with the group's timeout) until every rank has reached the collective ``what``; the blocking call
    that follows then cannot hang, and uses MPI's tuned algorithms (2-3x faster on large arrays than the
    non-blocking ones)."""
    _wait(_comm().Ibarrier(), what)


def barrier() -> None:
    """Wait until every rank has reached this call."""
    _wait(_comm().Ibarrier(), "barrier")


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """Reduce ``tensor`` across all ranks, in place (every rank ends with the result); returns it.

    Args:
        op: ``"sum"``, ``"avg"`` (floating point only), ``"max"``, ``"min"`` or ``"product"`` (or ``ReduceOp.*``).

    Example:
        >>> t = nf.tensor([float(dist.get_rank())]); dist.all_reduce(t, op="avg")
    """
    _check(tensor, "all_reduce")
    mpi_op = _op(op)
    avg = str(op).lower() == "avg"
    if avg and tensor.dtype.kind != "f":
        raise TypeError(f"all_reduce: op='avg' needs a floating-point tensor, got {tensor.dtype}")
    buf = _host(tensor)
    _meet(f"all_reduce(op={op!r}) of {buf.shape} {buf.dtype}")
    _comm().Allreduce(_mpi().IN_PLACE, buf, mpi_op)
    if avg:
        buf *= buf.dtype.type(1.0 / get_world_size())
    _store(tensor, buf)
    return tensor


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s values, in place; returns it."""
    _check(tensor, "broadcast")
    size = get_world_size()
    if not 0 <= src < size:
        raise ValueError(f"broadcast: src={src} is not a rank of this group of {size}")
    buf = _host(tensor)
    _meet(f"broadcast of {buf.shape} {buf.dtype} from rank {src}")
    _comm().Bcast(buf, root=src)
    _store(tensor, buf)
    return tensor


def all_gather(tensor_list: list, tensor: Tensor) -> list:
    """Fill ``tensor_list[i]`` with rank ``i``'s ``tensor`` (torch-style: the list holds ``world_size`` tensors
    of ``tensor``'s shape and dtype, written in place); returns the list."""
    _check(tensor, "all_gather")
    size = get_world_size()
    if len(tensor_list) != size:
        raise ValueError(f"all_gather: tensor_list must hold world_size={size} tensors, got {len(tensor_list)}")
    for i, t in enumerate(tensor_list):
        _check(t, "all_gather")
        if t.shape != tensor.shape or t.dtype != tensor.dtype:
            raise ValueError(f"all_gather: tensor_list[{i}] is {tuple(t.shape)} {t.dtype}, expected "
                             f"{tuple(tensor.shape)} {tensor.dtype} like the input tensor")
    send = _host(tensor)
    recv = np.empty((size,) + send.shape, dtype=send.dtype)
    _meet(f"all_gather of {send.shape} {send.dtype}")
    _comm().Allgather(send, recv)
    for t, part in zip(tensor_list, recv):
        t.data[...] = t._backend.asarray(part)
        t._version[0] += 1
    return tensor_list


def _reduce_floats(values: list, op: str = "sum") -> list:
    """Reduce a few Python floats across ranks (one small message); used for logs and stop flags."""
    buf = np.asarray(values, dtype=np.float64)
    _wait(_comm().Iallreduce(_mpi().IN_PLACE, buf, _op(op)), "all_reduce of training logs")
    if op == "avg":
        buf /= get_world_size()
    return buf.tolist()


def _broadcast_int(value: int, src: int = 0) -> int:
    buf = np.asarray([value], dtype=np.int64)
    _wait(_comm().Ibcast(buf, root=src), "broadcast of a seed")
    return int(buf[0])


def _broadcast_text(text: str, src: int = 0) -> str:
    """Rank ``src``'s string on every rank (length first, then the UTF-8 bytes)."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    n = _broadcast_int(raw.size, src)
    buf = raw.copy() if raw.size == n else np.empty(n, dtype=np.uint8)
    _wait(_comm().Ibcast(buf, root=src), "broadcast of a path")
    return buf.tobytes().decode("utf-8")


def _broadcast_many(tensors: list, src: int = 0) -> None:
    """Broadcast several tensors in place, all messages in flight at once."""
    if get_world_size() == 1:
        return
    comm = _comm()
    bufs = [_host(t) for t in tensors]
    requests = [comm.Ibcast(b, root=src) for b in bufs]
    for r in requests:
        _wait(r, f"broadcast of {len(tensors)} parameters/buffers from rank {src}")
    for t, b in zip(tensors, bufs):
        _store(t, b)


def _broadcast_array(a: np.ndarray, src: int = 0) -> np.ndarray:
    """Rank ``src``'s values of a C-contiguous array of the same shape on every rank, in place; returns it."""
    _wait(_comm().Ibcast(a, root=src), f"broadcast of {a.shape} {a.dtype}")
    return a
