"""``Optimizer``: parameter groups, per-parameter state and a ``state_dict`` in torch's format.

Subclasses give the math for one parameter, MLX style: ``init_state(p, group)`` returns the state (arrays
and counters) and ``update(p, grad, state, group)`` changes ``p.data`` in place. Updates run on the raw
arrays, through ``self._chunked``, in cache-sized pieces: each of the dozen ufuncs of an Adam step then
reads and writes L2-resident data instead of streaming the whole array from memory, and the few scratch
buffers it needs are preallocated once per optimizer (no full-size temporaries).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ..autograd import enable_grad
from ..tensor import Tensor


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class of all optimizers (torch.optim.Optimizer).

    Args:
        params: an iterable of Parameters, or of dicts ``{"params": ..., "lr": ...}`` (parameter groups
            whose entries override ``defaults``).
        defaults: the default hyperparameters of every group.
    """

    chunk_size = 1 << 16  # elements per piece in `_chunked` (256 KiB of float32 per array: fits in L2)

    def __init__(self, params: Iterable[Any], defaults: dict) -> None:
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or dicts, "
                            f"got a single Tensor (wrap it in a list)")
        self.defaults = dict(defaults)
        self.state: dict = {}  # Parameter -> {name: backend array | int}
        self.param_groups: list[dict] = []
        self._scratch: dict = {}  # (array module, dtype) -> list of flat chunk-sized buffers
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (``{"params": ..., **hyperparameters}``) to optimize."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{type(self).__name__}.add_param_group: expected a dict, "
                            f"got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        params = [params] if isinstance(params, Tensor) else list(params or ())
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"{type(self).__name__}: parameter group didn't specify a value of required "
                                 f"optimization parameter '{name}'")
            group.setdefault(name, default)
        group["params"] = params
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None, or to zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                elif p.grad.data.flags.writeable:
                    p.grad.data[...] = 0
                else:
                    p.grad = Tensor._make(p._backend.xp.zeros_like(p.grad.data), p._device)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                if p.grad.shape != p.shape:
                    raise RuntimeError(f"{type(self).__name__}.step: gradient of shape {tuple(p.grad.shape)} "
                                       f"does not match its parameter of shape {tuple(p.shape)}")
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self.init_state(p, group)
                self.update(p, p.grad.data, state, group)
                p._version[0] += 1
        return loss

    # -- the per-parameter math (subclasses) --------------------------------------------------------
    def init_state(self, p: Tensor, group: dict) -> dict:
        """The state of parameter ``p`` before its first update."""
        return {}

    def update(self, p: Tensor, g: Any, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        """Update ``p.data`` in place from the gradient array ``g``."""
        raise NotImplementedError

    def _chunked(self, kernel: Callable, p: Tensor, g: Any, *states: Any) -> None:
        """Run ``kernel(x, g, *states, t1, t2)`` over matching pieces of the parameter array ``x = p.data``,
        its gradient and its state arrays; ``t1``, ``t2`` are scratch buffers of the piece's size.

        Arrays that are not C-contiguous are handled in one piece with full-size scratch buffers.
        """
        x = p.data
        xp = p._backend.xp
        n = x.size
        writable = (x,) + states
        if not all(a.flags.c_contiguous for a in writable):
            kernel(x, g, *states, xp.empty_like(x), xp.empty_like(x))
            return
        key = (xp, x.dtype)
        scratch = self._scratch.get(key)
        if scratch is None:
            scratch = self._scratch[key] = [xp.empty(self.chunk_size, dtype=x.dtype) for _ in range(2)]
        c = self.chunk_size
        if n <= c:
            kernel(x, g, *states, *(s[:n].reshape(x.shape) for s in scratch))
            return
        flat = [a.reshape(-1) for a in (x, g) + states]
        for start in range(0, n, c):
            end = min(start + c, n)
            kernel(*(a[start:end] for a in flat), *(s[:end - start] for s in scratch))

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: Tensor | number}}, "param_groups": [{..., "params": [indices]}]}``.

        Parameters are numbered in group order, like torch; state tensors share memory with the
        optimizer's state (copy them if the optimizer keeps running before they are saved).
        """
        index: dict = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state.get(p)
                if s:
                    state[index[id(p)]] = {k: _pack(v, p) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore groups' hyperparameters and per-parameter state (copied and cast to each parameter's
        dtype and device). Accepts what ``state_dict`` returns, also after a trip through ``nf.save``/JSON
        (string indices, NumPy arrays)."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        by_index: dict = {}
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} "
                                 f"parameters in the state dict but {len(group['params'])} in the optimizer")
            by_index.update(zip((int(k) for k in saved["params"]), group["params"]))
        new_state: dict = {}
        for k, s in state_dict["state"].items():
            p = by_index.get(int(k))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {k}, which no group holds")
            new_state[p] = {key: _unpack(key, v, p) for key, v in s.items()}
        self.state = new_state
        for saved, group in zip(groups, self.param_groups):
            group.update({k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k != "params"})


def _pack(value: Any, p: Tensor) -> Any:
    """A state entry as it appears in a state dict: arrays as tensors, counters as 0-d float32 (like torch)."""
    if isinstance(value, int):
        return Tensor._make(p._backend.xp.asarray(float(value), dtype="float32"), p._device)
    if value is None or isinstance(value, float):
        return value
    return Tensor._make(value, p._device)


def _unpack(key: str, value: Any, p: Tensor) -> Any:
    if value is None:
        return None
    if key == "step":
        return int(float(value.item() if hasattr(value, "item") else value))
    src = value.data if isinstance(value, Tensor) else value
    if isinstance(value, Tensor) and value._device is not p._device:
        src = value._backend.to_numpy(src)
    return p._backend.xp.array(src, dtype=p.dtype if p.dtype.kind == "f" else None, copy=True)


def grad_for_update(xp: Any, x: Any, g: Any, weight_decay: float, maximize: bool, out: Any) -> Any:
    """The gradient an update uses: ``(-g if maximize else g) + weight_decay * x`` (torch's L2 penalty),
    written into ``out`` when it differs from ``g``; ``g`` itself is never modified."""
    if weight_decay == 0:
        return xp.negative(g, out=out) if maximize else g
    xp.multiply(x, weight_decay, out=out)
    (xp.subtract if maximize else xp.add)(out, g, out=out)
    return out
