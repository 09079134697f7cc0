"""``gradcheck``: compare autograd's Jacobian with central finite differences in float64."""
from __future__ import annotations

from typing import Any, Callable, Sequence


class GradcheckError(RuntimeError):
    pass


def _outputs(fn: Callable, inputs: Sequence[Any]) -> list:
    from ..tensor import Tensor
    out = fn(*inputs)
    return [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]


def gradcheck(fn: Callable, inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Check ``fn``'s gradients w.r.t. every float64 input that requires grad.

    Each Jacobian column comes from central differences ``(f(x+eps) - f(x-eps)) / 2eps``; each row from one
    backward pass with a one-hot output gradient. Returns True, or raises ``GradcheckError`` naming the
    input, the output and the largest mismatch.
    """
    from ..autograd.grad_mode import no_grad
    from ..tensor import Tensor
    from . import grad as autograd_grad

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    targets = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    for i in targets:
        if inputs[i].dtype.name != "float64":
            raise GradcheckError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")
    outs = _outputs(fn, inputs)
    xp = inputs[targets[0]]._backend.xp if targets else None
    for oi, out in enumerate(outs):
        if not out.requires_grad:
            continue
        n_out = out.data.size
        analytic = {i: xp.zeros((n_out, inputs[i].data.size)) for i in targets}
        for k in range(n_out):
            g = xp.zeros(n_out)
            g[k] = 1.0
            grads = autograd_grad(_outputs(fn, inputs)[oi], [inputs[i] for i in targets],
                                  grad_outputs=Tensor._make(g.reshape(out.shape).astype(out.dtype), out._device),
                                  allow_unused=True)
            for i, gi in zip(targets, grads):
                if gi is not None:
                    analytic[i][k] = gi.data.reshape(-1)
        for i in targets:
            x = inputs[i].data
            numeric = xp.zeros((n_out, x.size))
            flat = x.reshape(-1)  # a view when x is contiguous; perturb in place, restore after
            if not (flat.base is x or flat.base is x.base) and x.size:
                raise GradcheckError(f"gradcheck: input {i} must be contiguous")
            with no_grad():
                for j in range(x.size):
                    orig = flat[j]
                    flat[j] = orig + eps
                    plus = _outputs(fn, inputs)[oi].data.reshape(-1).astype("float64")
                    flat[j] = orig - eps
                    minus = _outputs(fn, inputs)[oi].data.reshape(-1).astype("float64")
                    flat[j] = orig
                    numeric[:, j] = (plus - minus) / (2 * eps)
            diff = xp.abs(analytic[i] - numeric)
            bad = diff > atol + rtol * xp.abs(numeric)
            if bad.any():
                r, c = (int(v[0]) for v in xp.nonzero(bad))
                msg = (f"gradcheck: Jacobian mismatch for output {oi} w.r.t. input {i} at (output element {r}, "
                       f"input element {c}): analytical {analytic[i][r, c]:.8g} vs numerical {numeric[r, c]:.8g} "
                       f"(max abs diff {float(diff.max()):.3g})")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True
