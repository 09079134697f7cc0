"""The backward engine: walks the graph from the roots in reverse topological order (Kahn's algorithm),
sums the gradients reaching each node, calls its ``backward`` and accumulates into leaves' ``.grad``."""
from __future__ import annotations

from typing import Any, Sequence

from .function import Function, _check_finite
from .grad_mode import ANOMALY, no_grad


def _dependencies(roots: Sequence[Function]) -> dict:
    """Number of graph edges pointing at each Function node reachable from ``roots``."""
    deps: dict = {}
    seen = set(roots)
    stack = list(roots)
    while stack:
        node = stack.pop()
        for child in node.next:
            if isinstance(child, Function):
                deps[child] = deps.get(child, 0) + 1
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    return deps


def _check_node(node: Function) -> None:
    if node.freed:
        raise RuntimeError(
            f"Trying to backward through the graph a second time (op {node.name()}): its saved values were "
            f"freed by the first backward. Specify retain_graph=True on the first backward call.")
    for counter, version in node._versions:
        if counter[0] != version:
            raise RuntimeError(
                f"one of the tensors needed for gradient computation has been modified by an in-place "
                f"operation: op {node.name()} saved it at version {version}, it is now at version {counter[0]}")


_CALLBACKS: list = []  # one list per backward pass in progress (innermost last)


def queue_callback(fn: Any) -> None:
    """Run ``fn()`` once the backward pass in progress has finished (torch's
    ``Variable._execution_engine.queue_callback``); called from a tensor hook. DistributedDataParallel uses it
    to wait for its gradient all-reduces at the end of backward."""
    if not _CALLBACKS:
        raise RuntimeError("queue_callback: no backward pass is running (call it from a tensor hook)")
    _CALLBACKS[-1].append(fn)


def run_backward(roots: Sequence[Any], root_grads: Sequence[Any], retain_graph: bool,
                 capture: Sequence[Any] | None = None) -> list | None:
    """``_run_backward``, then the callbacks its hooks queued (``queue_callback``)."""
    _CALLBACKS.append([])
    try:
        out = _run_backward(roots, root_grads, retain_graph, capture)
    finally:
        queued = _CALLBACKS.pop()
    for fn in queued:
        fn()
    return out


def _run_backward(roots: Sequence[Any], root_grads: Sequence[Any], retain_graph: bool,
                  capture: Sequence[Any] | None = None) -> list | None:
    """Backpropagate ``root_grads`` (arrays) from ``roots`` (tensors).

    Without ``capture`` gradients accumulate into leaves' ``.grad``. With ``capture`` (a list of tensors)
    nothing is accumulated and the gradients reaching those tensors are returned (``autograd.grad``).
    """
    from ..tensor import Tensor

    captured: dict = {}
    targets: dict = {}
    if capture is not None:
        for i, t in enumerate(capture):
            targets[id(t.grad_fn) if t.grad_fn is not None else id(t)] = i
    # ids of arrays a leaf may neither keep as its .grad nor accumulate into: the caller's gradients, and arrays
    # this pass already handed to a leaf
    owned: set = {id(g) for g in root_grads}

    def deliver_leaf(leaf: Tensor, g: Any) -> None:
        if type(g) is not leaf._backend.ndarray:  # NumPy ops on 0-d arrays return scalars
            g = leaf._backend.asarray(g)
        if capture is not None:
            i = targets.get(id(leaf))
            if i is not None:
                captured[i] = g if i not in captured else captured[i] + g
            return
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g, leaf._device)
        if leaf.grad is None:
            if id(g) in owned or not leaf._backend.is_owned(g):
                g = g.copy()
            owned.add(id(g))
            leaf.grad = Tensor._make(g, leaf._device)
        else:
            acc = leaf.grad.data
            # in place (as torch accumulates: no new parameter-sized array), except into an array this pass
            # handed over: the op that produced it may have passed the same array to other nodes still to run
            if id(acc) not in owned and leaf._backend.is_owned(acc) and acc.shape == g.shape \
                    and acc.dtype == g.dtype:
                leaf._backend.binary(leaf._backend.xp.add, acc, g, out=acc)
            else:
                leaf.grad.data = acc + g

    pending: dict = {}
    start: list = []
    for t, g in zip(roots, root_grads):
        node = t.grad_fn
        if node is None:
            deliver_leaf(t, g)
        elif node in pending:
            pending[node] = pending[node] + g
        else:
            pending[node] = g
            start.append(node)
    deps = _dependencies(start)
    ready = [n for n in start if deps.get(n, 0) == 0]

    with no_grad():
        while ready:
            node = ready.pop()
            g = pending.pop(node, None)
            if g is not None:
                if capture is not None and id(node) in targets:
                    captured[targets[id(node)]] = g
                _check_node(node)
                if node.pre_hooks:
                    g = _run_hooks(node.pre_hooks, g, node.device)
                grads = node.backward(g)
                if not isinstance(grads, tuple):  # one input, or extra non-tensor args
                    grads = (grads,)
                if ANOMALY[0]:
                    for gi in grads:
                        _check_finite(node.name(), "backward", gi, node.backend)
                if not retain_graph:
                    node.release()
            else:
                grads = (None,) * len(node.next)
            for child, gi in zip(node.next, grads):
                if child is None:
                    continue
                if isinstance(child, Function):
                    if gi is not None:
                        prev = pending.get(child)
                        pending[child] = gi if prev is None else prev + gi
                    deps[child] -= 1
                    if deps[child] == 0:
                        ready.append(child)
                elif gi is not None:
                    deliver_leaf(child, gi)
    if capture is None:
        return None
    return [captured.get(i) for i in range(len(capture))]


def _run_hooks(hooks: list, g: Any, device: Any) -> Any:
    """Tensor hooks see the gradient as a Tensor and may return a replacement."""
    from ..tensor import Tensor

    for hook in hooks:
        out = hook(Tensor._make(device.backend.asarray(g), device))
        if out is not None:
            g = out.data if isinstance(out, Tensor) else out
    return g
