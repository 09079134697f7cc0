"""Gradient (activation) checkpointing, ``torch.utils.checkpoint``: trade compute for memory.

``checkpoint(fn, *args)`` runs ``fn`` without recording a graph and keeps only its inputs; backward re-runs
``fn`` with the graph on (same random state, so dropout masks match) and backpropagates through that
recomputed graph. A transformer with every block checkpointed keeps one (B, T, H) tensor per block instead of
all the block's intermediate activations; the price is one extra forward pass of each block.

Gradients are exactly those of the un-checkpointed call:
- tensor arguments (positional or keyword) get their gradient through the normal graph;
- parameters of ``fn`` when it is a ``Module`` (or a bound method of one) are inputs of the checkpoint node, so
  their gradients flow through the engine like any other (``.grad`` accumulation, hooks, ``autograd.grad``);
- any other leaf requiring grad that ``fn`` reaches (a plain function closing over a module) is found in the
  recomputed graph and its gradient is accumulated into its ``.grad`` (torch's reentrant behaviour; such leaves
  are invisible to ``autograd.grad``: pass a Module to get that).

Deviations from torch: ``fn`` must return one Tensor; ``use_reentrant`` is accepted for compatibility and both
values behave as described above; only the global generator's state is saved and restored (dropout with an
explicit ``generator=`` inside ``fn`` would draw different masks on recomputation).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..autograd.engine import run_backward
from ..autograd.function import Function
from ..autograd.grad_mode import GRAD_ENABLED, enable_grad, no_grad
from ..nn.modules.module import Module
from ..random import get_rng_state, set_rng_state
from ..tensor import Tensor

__all__ = ["checkpoint"]


class CheckpointFunction(Function):
    """Inputs: the tensor arguments of ``fn`` then its module's parameters. Saves only the arguments."""

    def forward(self, *arrays: Any, function: Callable, args: tuple, kwargs: dict, params: tuple) -> Any:
        self.function = function
        self.params = params
        self.rng_state = get_rng_state()
        with no_grad():
            out = function(*args, **kwargs)
        if not isinstance(out, Tensor):
            raise TypeError(f"checkpoint: {_name(function)} must return one Tensor, got {type(out).__name__}")
        self.saved = (args, kwargs)
        return out.data

    def backward(self, g: Any) -> tuple:
        args, kwargs = self.saved
        params = self.params
        # re-run fn on detached copies of its inputs, with the random state it saw in forward
        args = tuple(_detached(a) for a in args)
        kwargs = {k: _detached(v) for k, v in kwargs.items()}
        now = get_rng_state()
        set_rng_state(self.rng_state)
        try:
            with enable_grad():
                out = self.function(*args, **kwargs)
        finally:
            set_rng_state(now)
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        n_inputs = len(inputs)
        if not out.requires_grad:
            return (None,) * (n_inputs + len(params))
        # leaves: the detached inputs, this node's parameters, then any other leaf the recomputation reached
        known = [a for a in inputs if a.requires_grad] + list(params)
        other = _other_leaves(out, {id(t) for t in known})
        found = run_backward([out], [g], retain_graph=False, capture=known + other)
        by_id = {id(t): gi for t, gi in zip(known + other, found)}
        for leaf in other:
            _accumulate(leaf, by_id[id(leaf)])
        grads = [by_id.get(id(a)) if a.requires_grad else None for a in inputs]
        grads += [by_id.get(id(p)) for p in params]
        return tuple(grads)


def checkpoint(function: Callable, *args: Any, use_reentrant: bool = False, **kwargs: Any) -> Tensor:
    """``function(*args, **kwargs)`` without storing its intermediate activations; they are recomputed
    during backward.

    Args:
        function: a ``Module`` (or a bound method of one: its parameters receive their gradients through the
            engine) or any callable returning one Tensor.
        use_reentrant: accepted for torch compatibility; ignored (see the module docstring).

    Example:
        >>> h = checkpoint(block, h, mask)      # inside a training forward pass
    """
    if not GRAD_ENABLED[0]:
        return function(*args, **kwargs)
    owner = function if isinstance(function, Module) else getattr(function, "__self__", None)
    params = [p for p in owner.parameters() if p.requires_grad] if isinstance(owner, Module) else []
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    return CheckpointFunction.apply(*tensors, *params, function=function, args=args, kwargs=kwargs,
                                    params=tuple(params))


def _detached(a: Any) -> Any:
    if not isinstance(a, Tensor):
        return a
    d = a.detach()
    if a.requires_grad:
        d.requires_grad_()
    return d


def _other_leaves(out: Tensor, known: set) -> list:
    """Leaves requiring grad reachable from ``out``'s graph whose ids are not in ``known``."""
    found, seen, stack = [], set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        for child in node.next:
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, Function):
                stack.append(child)
            elif id(child) not in known:
                found.append(child)
    return found


def _accumulate(leaf: Tensor, g: Any) -> None:
    if g is None:
        return
    if leaf.grad is None:
        leaf.grad = Tensor._make(leaf._backend.asarray(g).copy(), leaf._device)
    else:
        leaf.grad.data = leaf.grad.data + g


def _name(function: Callable) -> str:
    return type(function).__name__ if isinstance(function, Module) else getattr(function, "__qualname__",
                                                                                 repr(function))
