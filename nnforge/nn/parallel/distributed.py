"""``DistributedDataParallel``: the same model on every rank, gradients averaged across ranks after backward."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..modules.module import Module

__all__ = ["DistributedDataParallel"]


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the ranks of ``nnforge.distributed`` (torch's DDP).

    At wrap time rank 0's parameters and buffers are copied to every rank, so ranks may start from different
    random weights. Each backward pass then averages the gradients of the trainable parameters
    (``requires_grad``; frozen ones, e.g. the base weights under LoRA, are skipped) over all ranks with
    bucketed all-reduces of about ``bucket_cap_mb`` each, started while backward still runs. A parameter that
    got no gradient on a rank counts as zeros there; one that got none on any rank keeps ``grad`` as it was.
    The optimizer then takes the same step everywhere.

    Args:
        module: the model (CPU parameters).
        bucket_cap_mb: size of one all-reduce message, in MiB.
        broadcast_buffers: copy rank 0's buffers (e.g. BatchNorm running statistics) to all ranks at each
            forward in training mode.

    ``.module`` is the wrapped model (``ddp.module.state_dict()`` has its own keys; ``ddp.state_dict()`` prefixes
    them with ``module.`` as torch does). Which parameters are trainable is re-read at each forward.
    Unlike torch, the all-reduce runs for any backward outside ``no_sync()`` (also through ``ddp.module(...)``
    directly); the averaged gradients are the same.

    Example:
        >>> dist.init_process_group()
        >>> model = DistributedDataParallel(MyNet())
        >>> opt = nf.optim.SGD(model.parameters(), lr=0.1)
        >>> loss_fn(model(x_shard), y_shard).backward(); opt.step()   # same update on every rank
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True,
                 device_ids: Any = None, output_device: Any = None, find_unused_parameters: bool = False) -> None:
        from ... import distributed as dist

        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: the process group is not initialized; call "
                               "nnforge.distributed.init_process_group() first (and launch with mpirun -n N)")
        self.module = module
        self.bucket_cap_mb = bucket_cap_mb
        self.broadcast_buffers = broadcast_buffers
        self._reducer = None
        self._trainable: tuple = ()
        self._sync_module_states()
        self._rebuild()

    def _sync_module_states(self) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        from ...distributed.collectives import _broadcast_many
        _broadcast_many(list(self.module.parameters()) + list(self.module.buffers()))

    def _rebuild(self) -> None:
        """(Re)build the buckets when the set of trainable parameters changed (freeze/unfreeze, LoRA)."""
        from ...distributed.reducer import Reducer

        params = [p for p in self.module.parameters() if p.requires_grad]
        key = tuple(id(p) for p in params)
        if key == self._trainable and self._reducer is not None:
            return
        enabled = True
        if self._reducer is not None:
            enabled = self._reducer.enabled
            self._reducer.remove()
        self._reducer = Reducer(params, self.bucket_cap_mb)
        self._reducer.enabled = enabled
        self._trainable = key

    def _pre_forward(self) -> None:
        """What each training forward needs first: fresh buckets if trainability changed, rank 0's buffers."""
        self._rebuild()
        if self.broadcast_buffers and self.module.training:
            buffers = list(self.module.buffers())
            if buffers:
                from ...distributed.collectives import _broadcast_many
                _broadcast_many(buffers)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._pre_forward()
        return self.module(*args, **kwargs)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside this block only accumulate gradients locally (gradient accumulation); the
        first backward after it averages the accumulated gradients.

        Example:
            >>> with ddp.no_sync():
            ...     loss_fn(ddp(x1), y1).backward()
            >>> loss_fn(ddp(x2), y2).backward()    # grads = average over ranks of (g1 + g2)
        """
        self._rebuild()
        before = self._reducer.enabled
        self._reducer.enabled = False
        try:
            yield
        finally:
            self._reducer.enabled = before

    def remove_hooks(self) -> None:
        """Stop averaging gradients (detach the hooks from the module's parameters)."""
        if self._reducer is not None:
            self._reducer.remove()
            self._reducer = None
            self._trainable = ()
