"""``Function``: one differentiable op. ``apply`` runs ``forward`` on arrays and records a graph node.

Subclasses implement ``forward(*arrays, **params) -> array`` and ``backward(grad) -> grad | tuple``, returning
one gradient per input (``None`` where no gradient is needed), each already reduced to that input's shape.
Heavy state needed by backward goes in ``self.saved`` so that it is freed once backward has used it.
Non-Tensor inputs (Python scalars, index arrays) are passed through to ``forward`` and get no gradient.

Version checks: a Function that reads its inputs' values in backward keeps ``uses_inputs = True`` (default);
one that reads its own output sets ``uses_output = True``. Modifying such a tensor in place after the op ran
makes backward raise instead of returning a wrong gradient.
"""
from __future__ import annotations

from typing import Any

from .grad_mode import ANOMALY, GRAD_ENABLED


class Function:
    uses_inputs = True
    uses_output = False
    # filled by apply for graph nodes
    next: tuple = ()
    needs_input_grad: tuple = ()
    saved: Any = None
    freed = False
    _versions: tuple = ()
    pre_hooks: list = ()  # hooks of the output tensor (register_hook/retain_grad on a non-leaf)
    out_device: Any = None  # set by forward only when the output lives on another device (ToDevice)
    is_view = False  # output shares memory with input 0, so they share a version counter
    records = True  # set by apply before forward: False when no graph will be kept (forward may skip saving)

    @classmethod
    def apply(cls, *inputs: Any, **params: Any):
        fn = cls()
        dev = CPU
        arrays = []
        arrays_seen = False
        requires = False
        for t in inputs:
            if type(t) is Tensor or isinstance(t, Tensor):
                if not arrays_seen:
                    dev = t._device
                    arrays_seen = True
                elif t._device is not dev:
                    raise RuntimeError(
                        f"{cls.__name__.lower()}: expected all tensors on the same device, "
                        f"found {dev} and {t._device}")
                arrays.append(t.data)
                requires = requires or t.requires_grad
            else:
                arrays.append(t)
        fn.backend = backend = dev.backend
        fn.device = dev
        fn.records = requires and GRAD_ENABLED[0]
        out = fn.forward(*arrays, **params)
        if fn.out_device is not None:
            dev = fn.out_device
            backend = dev.backend
        if type(out) is not backend.ndarray:
            out = backend.asarray(out)
        result = Tensor._make(out, dev)
        if cls.is_view and getattr(out, "base", None) is not None:
            result._version = inputs[0]._version
        if ANOMALY[0]:
            _check_finite(cls.__name__, "forward", out, backend)
        if requires and GRAD_ENABLED[0]:
            result.requires_grad = True
            result.grad_fn = fn
            nxt = []
            needs = []
            versions = []
            for t in inputs:
                if isinstance(t, Tensor) and t.requires_grad:
                    nxt.append(t.grad_fn if t.grad_fn is not None else t)
                    needs.append(True)
                else:
                    nxt.append(None)
                    needs.append(False)
                if cls.uses_inputs and isinstance(t, Tensor):
                    versions.append((t._version, t._version[0]))
            if cls.uses_output:
                versions.append((result._version, result._version[0]))
            fn.next = tuple(nxt)
            fn.needs_input_grad = tuple(needs)
            fn._versions = tuple(versions)
        else:
            fn.saved = None  # nothing will call backward: drop what forward kept
        return result

    def forward(self, *args: Any, **kwargs: Any):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.name()}Backward>"

    def release(self) -> None:
        """Free what forward saved; a later backward through this node raises."""
        self.saved = None
        self.freed = True


def _check_finite(op: str, stage: str, arr: Any, backend: Any) -> None:
    """Raise naming ``op`` when ``arr`` holds NaN or Inf (detect_anomaly mode)."""
    if arr is not None and arr.dtype.kind in "fc":
        xp = backend.xp
        if not bool(xp.isfinite(arr).all()):
            bad = "nan" if bool(xp.isnan(arr).any()) else "inf"
            raise FloatingPointError(f"anomaly detected: op '{op}' produced {bad} values in its {stage}")


from ..backend import CPU  # noqa: E402
from ..tensor import Tensor  # noqa: E402  (tensor.py needs nothing from here at import)
