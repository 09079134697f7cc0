"""``Module``: the base class of layers and models, with parameter/buffer registration by attribute."""
from __future__ import annotations

import fnmatch
from collections import OrderedDict
from typing import Any, Callable, Iterator

from ...tensor import Tensor
from ..parameter import Parameter


class Module:
    """Base class for all layers and models (torch.nn.Module semantics).

    Assigning a ``Parameter`` or ``Module`` to an attribute registers it; ``register_buffer`` registers
    non-trainable state that is saved in ``state_dict`` (unless ``persistent=False``).
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign '{name}' before Module.__init__() is called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        if isinstance(value, (Parameter, Module)):
            target = self._parameters if isinstance(value, Parameter) else self._modules
            for store in (self._parameters, self._buffers, self._modules):
                if store is not target:  # re-assigning keeps the entry's place (ModuleList/Sequential order)
                    store.pop(name, None)
            self.__dict__.pop(name, None)
            target[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                kind = "parameter" if name in self._parameters else "submodule"
                raise TypeError(f"cannot assign {type(value).__name__} to {kind} '{name}' of "
                                f"{type(self).__name__} (expected a Parameter/Module or None)")
            (self._parameters if name in self._parameters else self._modules)[name] = None
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer '{name}' (a Tensor or None "
                                f"is expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            s = d.get(store)
            if s is not None and name in s:
                return s[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer('{name}'): expected a Tensor or None, got {type(tensor).__name__}")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter('{name}'): expected a Parameter or None")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name: str, module: "Module | None") -> None:
        self.__dict__.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    # -- calling -----------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.forward(*args, **kwargs)
        except _NAMED_ERRORS as e:  # free when nothing is raised; on the way out, name the failing layer
            _name_layer(e, self)
            raise

    # -- traversal ---------------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        seen: set = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        mod = self
        for part in filter(None, target.split(".")):
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule '{part}' (looking up '{target}')")
            mod = mod._modules[part]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter '{name}'")
        return mod._parameters[name]

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name (the same keys as PyTorch's)."""
        out: OrderedDict = OrderedDict()
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            dot = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """Copy values (nf tensors, NumPy arrays or anything array-like) into parameters and buffers.

        With ``strict`` any missing or unexpected key raises; a shape mismatch always raises, naming the key
        and both shapes. Returns ``(missing_keys, unexpected_keys)``.
        """
        from ...autograd.grad_mode import no_grad

        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            shape = tuple(src.shape) if hasattr(src, "shape") else tuple(Tensor(src).shape)
            if shape != tuple(target.shape):
                mismatched.append(f"{k}: checkpoint {shape} vs model {tuple(target.shape)}")
        problems = []
        if mismatched:
            problems.append("size mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}: " + " | ".join(problems))
        with no_grad():
            for k, target in own.items():
                if k in state_dict:
                    src = state_dict[k]
                    if isinstance(src, Tensor):
                        target.copy_(src)
                    else:
                        target.copy_(target._backend.asarray(_as_host_array(src)))
        return _IncompatibleKeys(missing, unexpected)

    # -- modes and conversions ---------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad = p.grad.detach()
                p.grad.zero_()

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Module":
        """Move parameters and buffers to a device and/or cast the floating-point ones to a dtype, in place
        (the Parameter objects stay the same, so optimizers keep working)."""
        from ...backend import Device
        from ...tensor import _is_device_name

        dev = kwargs.get("device")
        dt = kwargs.get("dtype")
        for a in args:
            if isinstance(a, Device) or isinstance(a, str) and _is_device_name(a):
                dev = a
            else:
                dt = a
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is None:
                        continue
                    new = t.detach()
                    if dt is not None and t.is_floating_point():
                        new = new.to(dt)
                    if dev is not None:
                        new = new.to(dev)
                    t.data, t._device = new.data, new._device
        return self

    def float(self) -> "Module":
        return self.to("float32")

    def double(self) -> "Module":
        return self.to("float64")

    def half(self) -> "Module":
        return self.to("float16")

    def cpu(self) -> "Module":
        return self.to("cpu")

    # -- freezing (MLX-style) ----------------------------------------------------------------------
    def freeze(self, patterns: Any = None) -> "Module":
        """Stop gradients for parameters whose names match any glob pattern (all when None)."""
        return self._set_trainable(patterns, False)

    def unfreeze(self, patterns: Any = None) -> "Module":
        return self._set_trainable(patterns, True)

    def _set_trainable(self, patterns: Any, flag: bool) -> "Module":
        pats = [patterns] if isinstance(patterns, str) else patterns
        for name, p in self.named_parameters():
            if pats is None or any(fnmatch.fnmatchcase(name, pat) for pat in pats):
                p.requires_grad = flag
        return self

    # -- printing ----------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))


_NAMED_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def _name_layer(e: BaseException, module: Module) -> None:
    """Prefix the message of ``e`` with the dotted path of the layer that raised it, relative to ``module``
    (each enclosing ``Module.__call__`` adds its child's attribute name: ``in 'bert.encoder.layer.0.output.dense':
    Linear(...): expected ...``)."""
    state = getattr(e, "__dict__", None)
    if state is None:  # an exception type without attributes: left as it is
        return
    last = state.get("_nf_layer")
    if last is None:  # raised by this module's own forward
        if len(e.args) == 1 and isinstance(e.args[0], str):
            e._nf_layer, e._nf_path, e._nf_message = module, "", e.args[0]
        return
    if last is module:  # the same module called twice up the stack (recursion)
        return
    name = next((k for k, m in module._modules.items() if m is last), None)
    if name is not None:
        e._nf_path = f"{name}.{e._nf_path}" if e._nf_path else name
        e.args = (f"in '{e._nf_path}': {e._nf_message}",)
    e._nf_layer = module


class _IncompatibleKeys(tuple):
    def __new__(cls, missing: list, unexpected: list):
        return super().__new__(cls, (missing, unexpected))

    @property
    def missing_keys(self) -> list:
        return self[0]

    @property
    def unexpected_keys(self) -> list:
        return self[1]


def _as_host_array(x: Any) -> Any:
    """Arrays from other frameworks (torch tensors, NumPy) as NumPy arrays, without importing them."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and not isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return x
